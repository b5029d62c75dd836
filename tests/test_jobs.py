"""The local executor with real processes: lifecycle, cancel, kill -9, crash, concurrency, restart.

The training command is swapped for tests/jobs_fake_train.py (same arguments, behaviour chosen by
the run name) so each case takes a few seconds; the tests marked slow at the end run the real
`python -m mmcrl_core train` on a tiny dataset.
Every wait polls the registry with a timeout; nothing assumes a sleep was long enough.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmcrl_core import jobs
from mmcrl_core.config import ModalitySpec, RunSpec, TrainConfig
from mmcrl_core.run_store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    get_run,
    list_runs,
    progress,
    run_folder,
)
from tests.jobs_fixtures import tiny_spec, wait_for

FAKE_TRAIN = Path(__file__).with_name("jobs_fake_train.py")
REPO_ROOT = Path(__file__).resolve().parent.parent


def fake_spec(mode: str, epochs: int = 3, seed: int = 0) -> RunSpec:
    return RunSpec(
        name=mode,
        modalities=[ModalitySpec(name="a", latents=2), ModalitySpec(name="b", latents=2)],
        train=TrainConfig(epochs=epochs, seed=seed, device="cpu"),
    )


@pytest.fixture
def executor(workspace, monkeypatch):
    monkeypatch.setenv("MMCRL_CANCEL_GRACE_S", "1")
    made = []

    def make(max_concurrent: int = 2) -> jobs.LocalSubprocessExecutor:
        ex = jobs.LocalSubprocessExecutor(
            workspace, max_concurrent=max_concurrent, command_prefix=[sys.executable, str(FAKE_TRAIN)]
        )
        made.append(ex)
        return ex

    yield make
    # never leave processes behind, whatever the test did
    for run in list_runs(workspace, statuses=[RUNNING, QUEUED]):
        made[0].cancel(run.id)
        try:
            made[0].wait(run.id, timeout=15)
        except TimeoutError:
            pass


def wait_for_progress(workspace, run_id: str, epochs: int = 1, timeout: float = 30) -> None:
    wait_for(lambda: len(progress(run_id, workspace)) >= epochs, timeout=timeout, what=f"{epochs} progress events")


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_run_succeeds_with_progress_threads_and_log(executor, workspace):
    ex = executor(max_concurrent=2)
    run_id = ex.submit(fake_spec("fake-ok", epochs=4))
    run = ex.wait(run_id, timeout=30)
    assert run.status == SUCCEEDED, run.error
    assert [e["epoch"] for e in progress(run_id, workspace)] == [1, 2, 3, 4]
    assert run.val_loss == pytest.approx(0.35)  # from the manifest's metrics
    assert run.exit_code == 0 and run.started_at and run.finished_at
    folder = run_folder(workspace, run_id)
    manifest = (folder / "manifest.json").read_text()
    threads = jobs.threads_per_run(2)
    assert f'"omp_threads": "{threads}"' in manifest
    assert run.command[run.command.index("--threads") + 1] == str(threads)
    assert "fake training" in (folder / "train.log").read_text()


def test_cancel_running_run_yields_cancelled_and_stops_its_processes(executor, workspace):
    ex = executor()
    run_id = ex.submit(fake_spec("fake-hang"))
    wait_for_progress(workspace, run_id)
    pid = get_run(run_id, workspace).pid
    ex.cancel(run_id)
    run = ex.wait(run_id, timeout=20)
    assert run.status == CANCELLED
    wait_for(lambda: pid_gone(pid), what="training process gone")
    assert not run_folder(workspace, run_id).exists()


def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored(executor, workspace):
    ex = executor()
    run_id = ex.submit(fake_spec("fake-stubborn"))
    wait_for_progress(workspace, run_id)
    ex.cancel(run_id)
    run = ex.wait(run_id, timeout=20)
    assert run.status == CANCELLED
    assert run.exit_code == -signal.SIGKILL


def test_cancel_queued_run_never_starts_it(executor, workspace):
    ex = executor(max_concurrent=1)
    first = ex.submit(fake_spec("fake-hang"))
    second = ex.submit(fake_spec("fake-ok"))
    assert get_run(second, workspace).status == QUEUED
    assert ex.cancel(second).status == CANCELLED
    ex.cancel(first)
    assert ex.wait(first, timeout=20).status == CANCELLED
    assert get_run(second, workspace).started_at is None
    assert progress(second, workspace) == []


def test_kill_9_of_training_process_yields_failed_with_reason(executor, workspace):
    ex = executor()
    run_id = ex.submit(fake_spec("fake-hang"))
    wait_for_progress(workspace, run_id)
    os.kill(get_run(run_id, workspace).pid, signal.SIGKILL)
    run = ex.wait(run_id, timeout=20)
    assert run.status == FAILED
    assert "killed by signal SIGKILL" in run.error
    assert "fake training" in run.error  # the last lines of its output


def test_run_whose_processes_all_died_is_failed_on_next_read(executor, workspace):
    """kill -9 of supervisor and training (as a server restart or the OOM killer would)."""
    ex = executor()
    run_id = ex.submit(fake_spec("fake-hang"))
    wait_for_progress(workspace, run_id)
    run = get_run(run_id, workspace)
    os.kill(run.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(run.supervisor_pid), what="supervisor gone")
    assert get_run(run_id, workspace).status == RUNNING  # nobody has read the registry yet
    os.kill(run.pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(run.pid), what="training process gone")
    fresh = jobs.get_executor("local", paths=workspace, max_concurrent=2)  # e.g. the restarted app
    run = fresh.status(run_id)
    assert run.status == FAILED
    assert run.error.startswith(jobs.DIED_REASON)
    assert "fake training" in run.error


@pytest.mark.parametrize(
    ("mode", "code", "message"),
    [("fake-crash", 1, "the fake model exploded"), ("fake-bad", 2, "is not numeric")],
)
def test_crash_yields_failed_with_its_message(executor, workspace, mode, code, message):
    ex = executor()
    run = ex.wait(ex.submit(fake_spec(mode)), timeout=30)
    assert run.status == FAILED
    assert run.exit_code == code
    assert message in run.error
    assert not run_folder(workspace, run.id).exists()


@pytest.mark.slow
def test_two_runs_at_once_both_finish(executor, workspace):
    ex = executor(max_concurrent=2)
    ids = [ex.submit(fake_spec("fake-ok", epochs=30, seed=s)) for s in (0, 1)]
    # both hold a slot at the same time...
    wait_for(lambda: all(get_run(i, workspace).status == RUNNING for i in ids), what="both running")
    wait_for(lambda: all(progress(i, workspace) for i in ids), what="both reporting")
    # ...and both finish
    assert [ex.wait(i, timeout=60).status for i in ids] == [SUCCEEDED, SUCCEEDED]


@pytest.mark.slow
def test_queue_moves_on_without_anyone_reading_the_registry(executor, workspace):
    ex = executor(max_concurrent=1)
    first = ex.submit(fake_spec("fake-ok", epochs=3))
    second = ex.submit(fake_spec("fake-ok", epochs=3))
    assert get_run(second, workspace).status == QUEUED
    # the first run's supervisor starts the second; we only read rows, never reconcile
    wait_for(lambda: get_run(second, workspace).status == SUCCEEDED, timeout=30, what="second run done")
    assert get_run(first, workspace).status == SUCCEEDED
    assert get_run(second, workspace).started_at >= get_run(first, workspace).finished_at


@pytest.mark.slow
def test_restart_of_the_app_loses_nothing(executor, workspace):
    """Submit from a process that exits at once (the app being restarted); a new one sees it all."""
    code = (
        "import sys; from mmcrl_core import jobs; from tests.test_jobs import fake_spec, FAKE_TRAIN;"
        "ex = jobs.LocalSubprocessExecutor(max_concurrent=1, command_prefix=[sys.executable, str(FAKE_TRAIN)]);"
        "print(ex.submit(fake_spec('fake-ok', epochs=20)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "MMCRL_HOME": str(workspace.root)},
    )
    run_id = out.stdout.strip().splitlines()[-1]
    fresh = jobs.get_executor("local", paths=workspace, max_concurrent=1)
    assert fresh.status(run_id).status in (RUNNING, SUCCEEDED)
    run = fresh.wait(run_id, timeout=60)
    assert run.status == SUCCEEDED
    assert len(progress(run_id, workspace)) == 20
    assert (run_folder(workspace, run_id) / "manifest.json").is_file()


@pytest.mark.slow
def test_submit_group_runs_every_seed_and_picks_lowest_validation_loss(executor, workspace):
    ex = executor(max_concurrent=2)
    group_id, ids = jobs.submit_group(ex, fake_spec("fake-ok", epochs=2), seeds=[3, 1])
    for run_id in ids:
        assert ex.wait(run_id, timeout=30).status == SUCCEEDED
    runs = list_runs(workspace, group_id=group_id)
    assert sorted(r.seed for r in runs) == [1, 3]
    assert jobs.best_run(group_id, workspace).seed == 1  # the fake's loss grows with the seed


def test_latent_grid_makes_one_run_per_setting_and_seed():
    spec = fake_spec("fake-ok")
    specs = jobs.group_specs(spec, seeds=[0, 1], latent_grid=[{"a": 1}, {"a": 3, "b": 1}])
    assert len(specs) == 4 and len({s.group_id for s in specs}) == 1
    assert [(s.modalities[0].latents, s.modalities[1].latents, s.train.seed) for s in specs] == [
        (1, 2, 0), (1, 2, 1), (3, 1, 0), (3, 1, 1),
    ]


def test_unknown_executor_is_a_user_error(workspace):
    from mmcrl_core.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown executor 'slurm'; choose one of local"):
        jobs.get_executor("slurm", paths=workspace)


def test_ray_executor_is_registered_when_ray_is_installed():
    pytest.importorskip("ray")
    assert "ray" in jobs.available_executors()


# --- the real train command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_runs_at_once_finish_and_the_same_seed_gives_identical_latents(workspace):
    ex = jobs.LocalSubprocessExecutor(workspace, max_concurrent=2)
    spec = tiny_spec(workspace, epochs=3, seed=5)
    ids = [ex.submit(spec), ex.submit(spec)]
    wait_for(lambda: all(get_run(i, workspace).status != QUEUED for i in ids), what="both started")
    runs = [ex.wait(i, timeout=240) for i in ids]
    assert [r.status for r in runs] == [SUCCEEDED, SUCCEEDED], [r.error for r in runs]
    first, second = (pd.read_csv(run_folder(workspace, i) / "latents.csv") for i in ids)
    pd.testing.assert_frame_equal(first, second)
    run = runs[0]
    assert run.device == "cpu" and run.val_loss is not None
    assert [e["epoch"] for e in progress(run.id, workspace)] == [1, 2, 3]
    manifest = (run_folder(workspace, run.id) / "manifest.json").read_text()
    for field in ('"seed": 5', '"data_sha256"', '"versions"', '"git_commit"', f'"run_id": "{run.id}"'):
        assert field in manifest


@pytest.mark.slow
def test_real_run_with_a_bad_config_fails_with_its_message(workspace):
    ex = jobs.LocalSubprocessExecutor(workspace, max_concurrent=1)
    run = ex.wait(ex.submit(tiny_spec(workspace, latents=5)), timeout=120)  # 5 latents from 3 columns
    assert run.status == FAILED
    assert run.exit_code == 2
    assert "5 latent" in run.error and "physiology" in run.error  # the message says what to change


@pytest.mark.slow
def test_real_run_cancelled_mid_training_leaves_no_folder(workspace):
    ex = jobs.LocalSubprocessExecutor(workspace, max_concurrent=1)
    run_id = ex.submit(tiny_spec(workspace, epochs=100_000))
    wait_for_progress(workspace, run_id, timeout=120)  # a real start imports torch and reads the data
    ex.cancel(run_id)
    run = ex.wait(run_id, timeout=60)
    assert run.status == CANCELLED
    assert not run_folder(workspace, run_id).exists()
    assert not list(workspace.models_dir.glob(f".{run_id}.partial-*"))
