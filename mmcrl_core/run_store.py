"""Run registry operations on the workspace SQLite file (tables `runs` and `run_progress`).

A run is one row in `runs` plus, once it succeeded, its folder models/<run_id>/ (written atomically
by the train command). While it runs, its job files live in models/.jobs/<run_id>/: the RunSpec it
was started with (spec.json) and its combined stdout/stderr (output.log), copied into the run
folder as train.log when the run succeeds.

Status goes queued -> running -> succeeded | failed | cancelled. `finish_run` only moves a run that
is still active, so the supervisor process and the app's reconcile step can never overwrite each
other's verdict.

Progress events are plain dicts written by the training callback through `progress_reporter`, one
row per epoch (train.fit's events). Keys we read (all optional except epoch): epoch, epochs
(planned), train_loss, val_loss, best_val_loss, seconds (this epoch), eta_seconds, and any other
numeric key (each loss term: rec, kl, sparsity) is drawn as a curve.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .config import RunSpec
from .errors import UserInputError
from .store import connect, open_connection, transaction, utc_now
from .workspace import WorkspacePaths, default_paths

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE_STATUSES = (QUEUED, RUNNING)
FINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)

JOBS_FOLDER = ".jobs"
SPEC_FILE = "spec.json"
OUTPUT_LOG = "output.log"
RUN_LOG = "train.log"  # the output log's name inside a succeeded run folder

# Progress keys that are bookkeeping, not loss curves.
PROGRESS_META_KEYS = {"epoch", "epochs", "seconds", "eta_seconds", "lr", "seed", "best_val_loss", "best_epoch"}

_UPDATABLE = {
    "name", "status", "started_at", "finished_at", "heartbeat_at", "pid", "device", "command",
    "log_path", "error", "val_loss", "metrics", "supervisor_pid", "exit_code", "cancel_requested_at",
    "threads", "executor",
}


@dataclass
class RunRecord:
    """One row of `runs`, with its JSON columns parsed."""

    id: str
    name: str | None
    dataset_id: str | None
    group_id: str | None
    kind: str
    status: str
    executor: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None
    pid: int | None
    device: str | None
    spec: dict
    command: list[str]
    out_dir: str
    log_path: str | None
    error: str | None
    val_loss: float | None
    metrics: dict = field(default_factory=dict)
    supervisor_pid: int | None = None
    exit_code: int | None = None
    cancel_requested_at: str | None = None
    threads: int | None = None

    @classmethod
    def from_row(cls, row) -> RunRecord:
        data = dict(row)
        data["spec"] = json.loads(data["spec"] or "{}")
        data["command"] = json.loads(data["command"] or "[]")
        data["metrics"] = json.loads(data["metrics"] or "{}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def run_spec(self) -> RunSpec:
        return RunSpec.model_validate(self.spec)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id

    @property
    def seed(self) -> int | None:
        return self.spec.get("train", {}).get("seed")

    def duration_s(self, now: datetime | None = None) -> float | None:
        """Seconds from start to finish (or to now while it runs)."""
        if not self.started_at:
            return None
        end = parse_time(self.finished_at) if self.finished_at else (now or datetime.now(UTC))
        return max(0.0, (end - parse_time(self.started_at)).total_seconds())


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def seconds_since(text: str | None) -> float:
    if not text:
        return math.inf
    return (datetime.now(UTC) - parse_time(text)).total_seconds()


def new_run_id() -> str:
    """Sortable by creation time, unique across processes, safe as a folder name."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_folder(paths: WorkspacePaths, run_id: str) -> Path:
    return paths.models_dir / run_id


def job_folder(paths: WorkspacePaths, run_id: str) -> Path:
    return paths.models_dir / JOBS_FOLDER / run_id


def create_run(
    spec: RunSpec,
    *,
    paths: WorkspacePaths | None = None,
    command: list[str] | None = None,
    executor: str = "local",
    threads: int | None = None,
    kind: str = "train",
) -> RunRecord:
    """Register a queued run; gives the spec a run id if it has none and saves it in the job folder."""
    paths = paths or default_paths()
    run_id = spec.run_id or new_run_id()
    spec = spec.model_copy(update={"run_id": run_id})
    jobs = job_folder(paths, run_id)
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / SPEC_FILE).write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    with connect(paths) as conn:
        conn.execute(
            "INSERT INTO runs (id, name, dataset_id, group_id, kind, status, executor, created_at, device, "
            "spec, command, out_dir, log_path, threads) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id, spec.name, spec.dataset_id, spec.group_id, kind, QUEUED, executor, utc_now(),
                spec.train.device, spec.model_dump_json(), json.dumps(command or []),
                str(run_folder(paths, run_id)), str(jobs / OUTPUT_LOG), threads,
            ),
        )
    return get_run(run_id, paths)


def set_command(run_id: str, command: list[str], paths: WorkspacePaths | None = None) -> None:
    update_run(run_id, paths, command=json.dumps(command))


def update_run(run_id: str, paths: WorkspacePaths | None = None, **columns) -> None:
    unknown = set(columns) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot update run columns {sorted(unknown)}")
    if not columns:
        return
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with connect(paths) as conn:
        conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*columns.values(), run_id))


def get_run(run_id: str, paths: WorkspacePaths | None = None) -> RunRecord | None:
    with connect(paths) as conn:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    return RunRecord.from_row(row) if row else None


def require_run(run_id: str, paths: WorkspacePaths | None = None) -> RunRecord:
    run = get_run(run_id, paths)
    if run is None:
        raise UserInputError(f"run {run_id!r} is not in this workspace; pick one from the Runs page")
    return run


def list_runs(
    paths: WorkspacePaths | None = None,
    *,
    dataset_id: str | None = None,
    group_id: str | None = None,
    statuses: Iterable[str] | None = None,
    kind: str | None = "train",
) -> list[RunRecord]:
    """Runs, newest first, optionally filtered."""
    clauses, params = [], []
    for column, value in (("dataset_id", dataset_id), ("group_id", group_id), ("kind", kind)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if statuses is not None:
        statuses = list(statuses)
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with connect(paths) as conn:
        rows = conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC, rowid DESC", params).fetchall()
    return [RunRecord.from_row(row) for row in rows]


def claim_queued(paths: WorkspacePaths, max_running: int, executor: str = "local") -> list[RunRecord]:
    """Atomically move the oldest queued runs of `executor` to running while fewer than max_running of
    its runs are running (other executors, such as Ray, schedule their own runs).

    BEGIN IMMEDIATE serialises this across the app and every supervisor, so two processes that
    free a slot at once never start more than the limit.
    """
    conn = open_connection(paths.registry_path)
    try:
        # a plain read first: the app reconciles on every page view and should not take the write lock
        queued = "SELECT id FROM runs WHERE status = ? AND executor = ? ORDER BY created_at, rowid LIMIT ?"
        if not conn.execute(queued, (QUEUED, executor, 1)).fetchone():
            return []
        with transaction(conn):
            running = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE status = ? AND executor = ?", (RUNNING, executor)
            ).fetchone()[0]
            free = max(0, max_running - running)
            if not free:
                return []
            rows = conn.execute(queued, (QUEUED, executor, free)).fetchall()
            now = utc_now()
            for row in rows:
                conn.execute(
                    "UPDATE runs SET status = ?, started_at = ?, heartbeat_at = ? WHERE id = ?",
                    (RUNNING, now, now, row["id"]),
                )
    finally:
        conn.close()
    return [get_run(row["id"], paths) for row in rows]


def finish_run(
    run_id: str,
    status: str,
    paths: WorkspacePaths | None = None,
    *,
    error: str | None = None,
    exit_code: int | None = None,
    val_loss: float | None = None,
    metrics: dict | None = None,
    device: str | None = None,
) -> bool:
    """Give an active run its final status; False if it had already finished (first verdict wins)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final status")
    with connect(paths) as conn:
        cursor = conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, error = ?, exit_code = ?, "
            "val_loss = COALESCE(?, val_loss), metrics = COALESCE(?, metrics), device = COALESCE(?, device) "
            "WHERE id = ? AND status IN (?, ?)",
            (
                status, utc_now(), error, exit_code, val_loss,
                json.dumps(metrics, default=str) if metrics is not None else None, device,
                run_id, *ACTIVE_STATUSES,
            ),
        )
        return cursor.rowcount == 1


def heartbeat(run_id: str, paths: WorkspacePaths | None = None) -> None:
    with connect(paths) as conn:
        conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (utc_now(), run_id))


def _write_progress(conn, run_id: str, event: dict) -> None:
    now = utc_now()
    with transaction(conn):
        if "epoch" in event:
            conn.execute(
                "INSERT OR REPLACE INTO run_progress (run_id, epoch, at, payload) VALUES (?, ?, ?, ?)",
                (run_id, int(event["epoch"]), now, json.dumps(event, default=_json_number)),
            )
        val_loss = _finite(event.get("val_loss"))
        # runs.val_loss keeps the best so far: training restores the best-validation weights.
        conn.execute(
            "UPDATE runs SET heartbeat_at = ?, val_loss = CASE WHEN ? IS NULL THEN val_loss "
            "WHEN val_loss IS NULL OR ? < val_loss THEN ? ELSE val_loss END WHERE id = ?",
            (now, val_loss, val_loss, val_loss, run_id),
        )


def record_progress(run_id: str, event: dict, paths: WorkspacePaths | None = None) -> None:
    """Store one progress event (replacing an earlier one for the same epoch) and beat the heart."""
    with connect(paths) as conn:
        _write_progress(conn, run_id, event)


def progress_reporter(run_id: str, paths: WorkspacePaths | None = None) -> Callable[[dict], None]:
    """A training callback that writes each progress event into the registry.

    Keeps one connection for the life of the training process (events may come many times a
    second on small data). A failure to write progress never stops training: it is reported once
    on stderr and the run goes on.
    """
    paths = paths or default_paths()
    state: dict = {"conn": None, "warned": False}

    def report(event: dict) -> None:
        try:
            if state["conn"] is None:
                state["conn"] = open_connection(paths.registry_path)
            _write_progress(state["conn"], run_id, dict(event))
        except Exception as exc:  # noqa: BLE001 - progress is best effort, training is not
            if not state["warned"]:
                state["warned"] = True
                print(f"warning: could not record progress for run {run_id}: {exc}", flush=True)

    return report


def progress(run_id: str, paths: WorkspacePaths | None = None) -> list[dict]:
    """The run's progress events in epoch order."""
    with connect(paths) as conn:
        rows = conn.execute(
            "SELECT payload FROM run_progress WHERE run_id = ? ORDER BY epoch", (run_id,)
        ).fetchall()
    return [json.loads(row["payload"]) for row in rows]


def progress_summary(run: RunRecord, events: list[dict]) -> dict:
    """Fraction done, epochs, best validation loss and an ETA for a progress bar."""
    planned = (events[-1].get("epochs") if events else None) or run.spec.get("train", {}).get("epochs")
    epoch = int(events[-1]["epoch"]) if events else 0
    fraction = min(1.0, epoch / planned) if planned else 0.0
    if run.status == SUCCEEDED:
        fraction = 1.0
    eta = _finite(events[-1].get("eta_seconds")) if events else None
    if eta is None and events and planned and run.status == RUNNING:
        elapsed = run.duration_s() or 0.0
        eta = elapsed / max(epoch, 1) * max(planned - epoch, 0)
    if run.status != RUNNING:
        eta = None
    val_losses = [v for v in (_finite(e.get("val_loss")) for e in events) if v is not None]
    return {
        "epoch": epoch,
        "epochs": planned,
        "fraction": fraction,
        "eta_s": eta,
        "best_val_loss": min(val_losses) if val_losses else run.val_loss,
    }


def curve_names(events: list[dict]) -> list[str]:
    """The numeric keys of progress events worth plotting (losses and each loss term)."""
    names: dict[str, None] = {}
    for event in events:
        for key, value in event.items():
            if key not in PROGRESS_META_KEYS and _finite(value) is not None:
                names[key] = None
    return list(names)


def read_tail(path: Path | str | None, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last lines of a log, with progress-bar carriage returns collapsed."""
    if not path or not Path(path).is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        text = handle.read().decode("utf-8", errors="replace")
    kept = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    kept = [line for line in kept if line.strip()]
    return "\n".join(kept[-lines:])


def log_path(run: RunRecord) -> Path | None:
    """The run's output log: inside the run folder once it succeeded, else in its job folder."""
    in_folder = Path(run.out_dir) / RUN_LOG
    if in_folder.is_file():
        return in_folder
    return Path(run.log_path) if run.log_path else None


def delete_run(run_id: str, paths: WorkspacePaths | None = None) -> None:
    """Remove the registry row, its progress, its run folder and its job files."""
    paths = paths or default_paths()
    run = require_run(run_id, paths)
    if run.is_active:
        raise UserInputError(f"run {run.label} is {run.status}; cancel it before deleting it")
    with connect(paths) as conn, transaction(conn):
        conn.execute("DELETE FROM run_progress WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    shutil.rmtree(run_folder(paths, run_id), ignore_errors=True)
    shutil.rmtree(job_folder(paths, run_id), ignore_errors=True)
    remove_partial_folders(paths, run_id)


def remove_partial_folders(paths: WorkspacePaths, run_id: str) -> None:
    """Staging folders a killed train command left behind (see runfolder.staged_run_folder)."""
    for partial in paths.models_dir.glob(f".{run_id}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_number(value):
    try:
        return float(value)  # numpy / torch scalars
    except (TypeError, ValueError):
        return str(value)
