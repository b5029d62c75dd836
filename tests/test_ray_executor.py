"""The Ray executor behind the jobs interface: a local Ray with 2 workers runs a sweep of 3 seeds
into the registry; cancel and failures are reported as with the local executor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmcrl_core import ray_executor
from mmcrl_core.config import ModalitySpec, RunSpec, TrainConfig
from mmcrl_core.errors import UserInputError
from mmcrl_core.run_store import CANCELLED, FAILED, SUCCEEDED, get_run, list_runs, progress
from mmcrl_core.runfolder import read_latents, read_manifest
from mmcrl_core.sweeps import executor_from_name, launch_sweep, summarise
from tests.jobs_fixtures import tiny_spec, wait_for

FAKE_TRAIN = Path(__file__).with_name("jobs_fake_train.py")


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray of 2 CPUs for the module (starting Ray takes seconds), shut down after."""
    ray = pytest.importorskip("ray")
    ray_executor.connect_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def fake_spec(mode: str, epochs: int = 3) -> RunSpec:
    return RunSpec(
        name=mode,
        modalities=[ModalitySpec(name="a", latents=2), ModalitySpec(name="b", latents=2)],
        train=TrainConfig(epochs=epochs, device="cpu"),
    )


def test_resources_follow_threads_and_device(workspace):
    executor = ray_executor.RayExecutor(workspace)
    cpu = fake_spec("fake-ok")
    assert executor.resources(cpu) == {"num_cpus": 1.0, "num_gpus": 0.0}
    gpu = cpu.model_copy(update={"train": TrainConfig(device="cuda", threads=4)})
    assert executor.resources(gpu) == {"num_cpus": 4.0, "num_gpus": 1.0}
    shared_gpu = ray_executor.RayExecutor(workspace, cpus_per_run=2, gpus_per_run=0.5)
    assert shared_gpu.resources(cpu) == {"num_cpus": 2.0, "num_gpus": 0.5}


def test_without_ray_the_executor_is_a_clear_user_error(workspace, monkeypatch):
    monkeypatch.setattr(ray_executor, "ray_installed", lambda: False)
    with pytest.raises(UserInputError, match="requirements-ray.txt"):
        executor_from_name("ray", workspace)


@pytest.mark.slow
def test_ray_sweep_of_three_seeds_on_two_workers_registers_every_result(ray_session, workspace):
    executor = ray_executor.RayExecutor(workspace)
    sweep = launch_sweep(executor, tiny_spec(workspace, epochs=3), seeds=[0, 1, 2])
    finished = [executor.wait(run_id, timeout=240, poll_s=0.5) for run_id in sweep.run_ids]

    assert [run.status for run in finished] == [SUCCEEDED] * 3, [run.error for run in finished]
    runs = list_runs(workspace, group_id=sweep.group_id)
    assert sorted(run.id for run in runs) == sorted(sweep.run_ids)
    for run in runs:
        assert run.executor == "ray"
        assert run.val_loss is not None
        assert len(progress(run.id, workspace)) == 3  # one event per epoch, written from the Ray task
        manifest = read_manifest(run.out_dir)
        assert manifest["run_id"] == run.id
        assert manifest["metrics"]["best_val_loss"] == pytest.approx(run.val_loss)
        assert len(read_latents(run.out_dir)) > 0
    assert sorted(run.seed for run in runs) == [0, 1, 2]

    summary = summarise(sweep.group_id, workspace)
    assert summary.failed == []
    assert summary.latent_choice["succeeded"].tolist() == [3]
    assert summary.stability is not None and len(summary.stability.run_ids) == 3


@pytest.mark.slow
def test_cancel_and_failures_are_reported_as_with_the_local_executor(ray_session, workspace):
    executor = ray_executor.RayExecutor(workspace, command_prefix=[sys.executable, str(FAKE_TRAIN)])
    hanging = executor.submit(fake_spec("fake-hang"))
    crashing = executor.submit(fake_spec("fake-crash"))
    queued = executor.submit(fake_spec("fake-ok"))  # 2 CPUs, both busy: waits in Ray's queue

    wait_for(lambda: len(progress(hanging, workspace)) >= 1, timeout=60, what="progress from the Ray task")
    crashed = executor.wait(crashing, timeout=60)
    assert crashed.status == FAILED
    assert "exit code 1" in crashed.error and "the fake model exploded" in crashed.error

    # the crashed run freed a CPU, so the third run now starts and succeeds
    assert executor.wait(queued, timeout=60).status == SUCCEEDED

    executor.cancel(hanging)
    cancelled = executor.wait(hanging, timeout=30)
    assert cancelled.status == CANCELLED
    assert cancelled.error == "cancelled by the user"


@pytest.mark.slow
def test_cancel_of_a_run_still_in_rays_queue_never_starts_it(ray_session, workspace):
    executor = ray_executor.RayExecutor(workspace, command_prefix=[sys.executable, str(FAKE_TRAIN)])
    busy = [executor.submit(fake_spec("fake-hang")) for _ in range(2)]
    waiting = executor.submit(fake_spec("fake-ok"))
    for run_id in busy:
        wait_for(lambda r=run_id: len(progress(r, workspace)) >= 1, timeout=60, what="both CPUs busy")

    executor.cancel(waiting)
    for run_id in busy:
        executor.cancel(run_id)
    assert executor.wait(waiting, timeout=30).status == CANCELLED
    assert [executor.wait(r, timeout=30).status for r in busy] == [CANCELLED, CANCELLED]
    assert get_run(waiting, workspace).started_at is None
    assert progress(waiting, workspace) == []
