"""The run registry: rows, status changes, progress events, heartbeat, deletion (no processes here)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from mmcrl_core import run_store
from mmcrl_core.config import ModalitySpec, RunSpec, TrainConfig
from mmcrl_core.errors import UserInputError
from mmcrl_core.store import connect, open_connection


def make_spec(**train) -> RunSpec:
    return RunSpec(
        name="test run",
        dataset_id="ds-1",
        modalities=[ModalitySpec(name="sleep", latents=2), ModalitySpec(name="blood", latents=3)],
        train=TrainConfig(epochs=10, **train),
    )


def test_create_run_registers_a_queued_run_with_its_spec(workspace):
    run = run_store.create_run(make_spec(seed=4), paths=workspace, command=["python", "x"], threads=2)
    assert run.status == run_store.QUEUED
    assert run.seed == 4 and run.threads == 2 and run.command == ["python", "x"]
    assert run.run_spec.run_id == run.id  # the spec knows its id, as the manifest will
    assert run.out_dir == str(workspace.models_dir / run.id)
    saved = run_store.job_folder(workspace, run.id) / run_store.SPEC_FILE
    assert RunSpec.model_validate_json(saved.read_text()).run_id == run.id
    assert [r.id for r in run_store.list_runs(workspace)] == [run.id]
    assert run_store.get_run("nope", workspace) is None


def test_list_runs_filters_and_orders_newest_first(workspace):
    first = run_store.create_run(make_spec(), paths=workspace)
    second = run_store.create_run(make_spec().model_copy(update={"group_id": "g1"}), paths=workspace)
    run_store.finish_run(first.id, run_store.FAILED, workspace, error="boom")
    assert [r.id for r in run_store.list_runs(workspace)] == [second.id, first.id]
    assert [r.id for r in run_store.list_runs(workspace, group_id="g1")] == [second.id]
    assert [r.id for r in run_store.list_runs(workspace, statuses=[run_store.FAILED])] == [first.id]
    assert run_store.list_runs(workspace, kind="benchmark") == []


def test_first_final_verdict_wins(workspace):
    run = run_store.create_run(make_spec(), paths=workspace)
    assert run_store.finish_run(run.id, run_store.CANCELLED, workspace, error="cancelled by the user")
    assert not run_store.finish_run(run.id, run_store.FAILED, workspace, error="late")
    final = run_store.get_run(run.id, workspace)
    assert final.status == run_store.CANCELLED and final.error == "cancelled by the user"
    with pytest.raises(ValueError):
        run_store.finish_run(run.id, run_store.RUNNING, workspace)


def test_claim_queued_respects_the_limit_under_concurrent_claims(workspace):
    ids = [run_store.create_run(make_spec(), paths=workspace).id for _ in range(5)]
    claimed: list = []

    def claim() -> None:
        claimed.extend(r.id for r in run_store.claim_queued(workspace, max_running=2))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids[:2])  # oldest first, never more than the limit
    running = run_store.list_runs(workspace, statuses=[run_store.RUNNING])
    assert len(running) == 2 and all(r.started_at and r.heartbeat_at for r in running)


def test_claim_leaves_runs_of_other_executors_alone(workspace):
    ray_run = run_store.create_run(make_spec(), paths=workspace, executor="ray")
    assert run_store.claim_queued(workspace, max_running=2) == []
    assert [r.id for r in run_store.claim_queued(workspace, max_running=2, executor="ray")] == [ray_run.id]


def test_progress_reporter_stores_events_keeps_best_val_loss_and_beats(workspace):
    run = run_store.create_run(make_spec(), paths=workspace)
    report = run_store.progress_reporter(run.id, workspace)
    for epoch, val in [(1, 3.0), (2, 2.0), (3, 2.5)]:
        report({"epoch": epoch, "epochs": 10, "train_loss": val + 1, "val_loss": val, "kl": 0.5, "lr": 1e-3})
    report({"epoch": 3, "epochs": 10, "train_loss": 3.4, "val_loss": 2.4, "kl": 0.4, "lr": 1e-3})  # replaces
    events = run_store.progress(run.id, workspace)
    assert [e["epoch"] for e in events] == [1, 2, 3]
    assert events[-1]["val_loss"] == 2.4
    fresh = run_store.get_run(run.id, workspace)
    assert fresh.val_loss == 2.0 and fresh.heartbeat_at is not None
    assert run_store.curve_names(events) == ["train_loss", "val_loss", "kl"]


def test_progress_reporter_never_raises_into_training(tmp_path, capsys):
    from mmcrl_core.workspace import WorkspacePaths

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    report = run_store.progress_reporter("r1", WorkspacePaths(blocked))
    report({"epoch": 1})
    report({"epoch": 2})
    assert capsys.readouterr().out.count("could not record progress") == 1


def test_progress_summary_reports_fraction_and_eta(workspace):
    run = run_store.create_run(make_spec(), paths=workspace)
    run_store.record_progress(run.id, {"epoch": 4, "epochs": 10, "val_loss": 1.5, "eta_seconds": 12.0}, workspace)
    run_store.claim_queued(workspace, 1)
    run = run_store.get_run(run.id, workspace)
    summary = run_store.progress_summary(run, run_store.progress(run.id, workspace))
    assert summary["fraction"] == pytest.approx(0.4)
    assert summary["eta_s"] == 12.0 and summary["best_val_loss"] == 1.5
    run_store.finish_run(run.id, run_store.SUCCEEDED, workspace)
    done = run_store.progress_summary(run_store.get_run(run.id, workspace), [])
    assert done["fraction"] == 1.0 and done["eta_s"] is None


def test_delete_run_removes_row_progress_folder_and_job_files(workspace):
    run = run_store.create_run(make_spec(), paths=workspace)
    with pytest.raises(UserInputError, match="cancel it before deleting"):
        run_store.delete_run(run.id, workspace)
    run_store.record_progress(run.id, {"epoch": 1}, workspace)
    run_store.finish_run(run.id, run_store.SUCCEEDED, workspace)
    folder = run_store.run_folder(workspace, run.id)
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    partial = workspace.models_dir / f".{run.id}.partial-1234"
    partial.mkdir()
    run_store.delete_run(run.id, workspace)
    assert run_store.get_run(run.id, workspace) is None
    assert run_store.progress(run.id, workspace) == []
    assert not folder.exists() and not partial.exists()
    assert not run_store.job_folder(workspace, run.id).exists()
    with pytest.raises(UserInputError, match="not in this workspace"):
        run_store.delete_run(run.id, workspace)


def test_read_tail_keeps_last_lines_and_collapses_progress_bars(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(50)) + "10%\r50%\r100% done\n\n")
    assert run_store.read_tail(log, 3) == "line 48\nline 49\n100% done"
    assert run_store.read_tail(tmp_path / "missing") == ""


def test_older_registry_gets_the_added_columns(workspace):
    """A registry made before the executor columns existed is upgraded when opened."""
    legacy = sqlite3.connect(workspace.registry_path)
    legacy.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, dataset_id TEXT, group_id TEXT, "
        "kind TEXT NOT NULL DEFAULT 'train', status TEXT NOT NULL, executor TEXT NOT NULL DEFAULT 'local', "
        "created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, heartbeat_at TEXT, pid INTEGER, "
        "device TEXT, spec TEXT NOT NULL, command TEXT, out_dir TEXT NOT NULL, log_path TEXT, error TEXT, "
        "val_loss REAL, metrics TEXT NOT NULL DEFAULT '{}')"
    )
    legacy.commit()
    legacy.close()
    open_connection(workspace.registry_path).close()
    with connect(workspace) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert {"supervisor_pid", "exit_code", "cancel_requested_at", "threads"} <= columns
    run = run_store.create_run(make_spec(), paths=workspace)
    assert run_store.get_run(run.id, workspace).threads is None
