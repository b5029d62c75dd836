"""Training jobs: an executor interface and the local subprocess executor (the default).

Pages and the CLI talk only to `Executor` (submit / status / cancel / reconcile), obtained with
`get_executor(name)`; another backend (Ray) registers itself with `register_executor` and needs no
change to the pages. Several seeds or a grid over latents go through `submit_group`.

How the local executor works, and why:

- `submit` registers the run as queued (spec and exact command line stored in the registry), then
  `start_queued` claims queued runs in one BEGIN IMMEDIATE transaction while fewer than
  MMCRL_MAX_CONCURRENT_RUNS run, so the app and several processes never exceed the limit.
- Each started run gets a detached supervisor, `python -m mmcrl_core.jobs supervise RUN_ID`, in its
  own session. It starts the training command (`python -m mmcrl_core train ... --run-id RUN_ID
  --threads N`, OMP_NUM_THREADS=N, N = cores // runs allowed at once) in a new process group,
  beats the heart every HEARTBEAT_S, escalates a cancel from SIGTERM to SIGKILL after
  CANCEL_GRACE_S, and when the child exits records exit code, final status and the tail of its
  output, then starts the next queued run. Because supervisors are detached, runs survive a
  restart of the app, and the queue moves on with no app open.
- `reconcile` (run whenever the app reads the registry) covers what no supervisor can report: if
  neither the supervisor nor the training process of a running run is alive (kill -9 of both,
  machine restart, out-of-memory killer), the run is marked failed with the reason and its last
  output; a cancel requested while no supervisor lives is finished here too. A pid only counts as
  the run's process when /proc shows it alive, not a zombie, and its command line names the run
  (pids are reused after a reboot). The heartbeat (written by the supervisor every HEARTBEAT_S and
  by each progress event) shows liveness on the pages and covers the moment between claiming a
  run and recording its supervisor's pid.
- The final verdict is written once (run_store.finish_run only moves active runs), so a supervisor
  and a reconcile that race cannot overwrite each other.

Settings: MMCRL_MAX_CONCURRENT_RUNS (runs at once), MMCRL_EXECUTOR (which executor the app uses),
MMCRL_TRAIN_COMMAND (JSON argv replacing `python -m mmcrl_core train`: a wrapper, or a stand-in in
tests), MMCRL_CANCEL_GRACE_S (SIGTERM -> SIGKILL delay).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

from .config import RunSpec
from .errors import UserInputError
from .run_store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUN_LOG,
    RUNNING,
    SPEC_FILE,
    SUCCEEDED,
    RunRecord,
    claim_queued,
    create_run,
    finish_run,
    get_run,
    heartbeat,
    job_folder,
    list_runs,
    new_run_id,
    read_tail,
    remove_partial_folders,
    require_run,
    run_folder,
    seconds_since,
    update_run,
)
from .store import connect, utc_now
from .workspace import REPO_ROOT, WorkspacePaths, default_paths

MAX_CONCURRENT_ENV = "MMCRL_MAX_CONCURRENT_RUNS"
EXECUTOR_ENV = "MMCRL_EXECUTOR"  # which executor the app uses (default: local)
# JSON list replacing `python -m mmcrl_core train` (a wrapper script, or a stand-in in tests)
TRAIN_COMMAND_ENV = "MMCRL_TRAIN_COMMAND"
HEARTBEAT_S = 2.0
# Seconds between SIGTERM and SIGKILL on cancel (the env var lets tests shorten it).
CANCEL_GRACE_S = float(os.environ.get("MMCRL_CANCEL_GRACE_S", "5"))
# A running run with no recorded process and no heartbeat for this long was never started.
STALE_S = 60.0
TAIL_LINES = 20
DIED_REASON = "process died without reporting (killed, out of memory or server restart)"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_max_concurrent() -> int:
    """MMCRL_MAX_CONCURRENT_RUNS, else 2 runs on a machine with 2+ cores (1 thread each), else 1."""
    value = os.environ.get(MAX_CONCURRENT_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise UserInputError(f"{MAX_CONCURRENT_ENV}={value!r} must be a whole number such as 2") from None
    return 2 if cpu_cores() >= 2 else 1


def threads_per_run(max_concurrent: int) -> int:
    """Cores divided among the runs allowed at once: oversubscribed OpenMP made steps ~100x slower."""
    return max(1, cpu_cores() // max(1, max_concurrent))


def train_command(
    spec: RunSpec, paths: WorkspacePaths, threads: int, prefix: list[str] | None = None
) -> list[str]:
    """The exact command line of a run; the full spec travels as --config."""
    prefix = prefix or [sys.executable, "-m", "mmcrl_core", "train"]
    command = [*prefix, *(f"{source.modality}={source.path}" for source in spec.sources)]
    command += ["--out", str(run_folder(paths, spec.run_id))]
    command += ["--config", str(job_folder(paths, spec.run_id) / SPEC_FILE)]
    if spec.id_column:
        command += ["--id-column", spec.id_column]
    # progress goes to the registry; a progress bar would only fill the log
    command += ["--run-id", spec.run_id, "--threads", str(threads), "--no-progress"]
    return command


class Executor(ABC):
    """Where training runs execute. Runs are always registered in the workspace registry."""

    name: str = "abstract"

    def __init__(self, paths: WorkspacePaths | None = None):
        self.paths = paths or default_paths()

    @abstractmethod
    def submit(self, spec: RunSpec) -> str:
        """Queue a run of `spec` (its name / group_id / seed are taken from it); returns the run id."""

    @abstractmethod
    def cancel(self, run_id: str) -> RunRecord:
        """Stop a queued or running run; it ends as cancelled."""

    @abstractmethod
    def reconcile(self) -> None:
        """Bring the registry in line with reality: dead runs failed, queued runs started."""

    def status(self, run_id: str) -> RunRecord:
        self.reconcile()
        return require_run(run_id, self.paths)

    def runs(self, **filters) -> list[RunRecord]:
        self.reconcile()
        return list_runs(self.paths, **filters)

    def wait(self, run_id: str, timeout: float = 600, poll_s: float = 0.2) -> RunRecord:
        """Block until the run is final (for scripts and tests); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.status(run_id)
            if not run.is_active:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.status} after {timeout:.0f}s")
            time.sleep(poll_s)


class LocalSubprocessExecutor(Executor):
    """Runs each training in a local subprocess, at most `max_concurrent` at once."""

    name = "local"

    def __init__(
        self,
        paths: WorkspacePaths | None = None,
        max_concurrent: int | None = None,
        command_prefix: list[str] | None = None,
    ):
        super().__init__(paths)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        if command_prefix is None and os.environ.get(TRAIN_COMMAND_ENV):
            command_prefix = json.loads(os.environ[TRAIN_COMMAND_ENV])
        self.command_prefix = command_prefix

    def submit(self, spec: RunSpec) -> str:
        threads = spec.train.threads or threads_per_run(self.max_concurrent)
        # the row is inserted with its command: any process may claim a queued run the moment it exists
        spec = spec.model_copy(update={"run_id": spec.run_id or new_run_id()})
        command = train_command(spec, self.paths, threads, self.command_prefix)
        run = create_run(spec, paths=self.paths, command=command, executor=self.name, threads=threads)
        start_queued(self.paths, self.max_concurrent)
        return run.id

    def cancel(self, run_id: str) -> RunRecord:
        run = require_run(run_id, self.paths)
        with connect(self.paths) as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ? AND status = ?",
                (CANCELLED, utc_now(), "cancelled before it started", run_id, QUEUED),
            )
            if cursor.rowcount == 0 and run.status == RUNNING:
                conn.execute(
                    "UPDATE runs SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?",
                    (utc_now(), run_id),
                )
        run = require_run(run_id, self.paths)
        if run.status == RUNNING:
            _signal_group(run, signal.SIGTERM)  # the supervisor escalates to SIGKILL if need be
        return run

    def reconcile(self) -> None:
        reconcile(self.paths, self.max_concurrent)


# --- the registry of executors: a Ray executor plugs in here by name ---------------------------------

_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalSubprocessExecutor}


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    _EXECUTORS[name] = factory


def _ray_executor(**options) -> Executor:
    # imported on use: Ray is an optional extra (requirements-ray.txt) and slow to import
    from .ray_executor import RayExecutor

    return RayExecutor(**options)


if importlib.util.find_spec("ray") is not None:
    register_executor("ray", _ray_executor)


def available_executors() -> list[str]:
    return list(_EXECUTORS)


def get_executor(name: str | None = None, paths: WorkspacePaths | None = None, **options) -> Executor:
    """The executor called `name` (default: $MMCRL_EXECUTOR, else local)."""
    name = name or os.environ.get(EXECUTOR_ENV) or "local"
    if name not in _EXECUTORS:
        raise UserInputError(f"unknown executor {name!r}; choose one of {', '.join(_EXECUTORS)}")
    return _EXECUTORS[name](paths=paths, **options)


# --- groups: several seeds, or a grid over latents chosen by validation loss ---------------------------


def group_specs(
    spec: RunSpec, seeds: Iterable[int], latent_grid: Iterable[dict[str, int]] | None = None, group_id=None
) -> list[RunSpec]:
    """One spec per (latent setting, seed); latent settings map modality name -> latents."""
    group_id = group_id or f"g-{new_run_id()}"
    settings = list(latent_grid or [None])
    specs = []
    for setting in settings:
        modalities = [
            m.model_copy(update={"latents": setting[m.name]}) if setting and m.name in setting else m
            for m in spec.modalities
        ]
        for seed in seeds:
            suffix = f"seed {seed}" + (
                " " + ",".join(f"{m.name}={m.latents}" for m in modalities) if setting else ""
            )
            specs.append(
                spec.model_copy(
                    update={
                        "run_id": None,
                        "group_id": group_id,
                        "name": f"{spec.name} ({suffix})" if spec.name else suffix,
                        "modalities": modalities,
                        "train": spec.train.model_copy(update={"seed": int(seed)}),
                    }
                )
            )
    return specs


def submit_group(
    executor: Executor,
    spec: RunSpec,
    seeds: Iterable[int],
    latent_grid: Iterable[dict[str, int]] | None = None,
) -> tuple[str, list[str]]:
    """Submit one run per (latent setting, seed) under one group id; returns (group_id, run ids)."""
    specs = group_specs(spec, list(seeds), latent_grid)
    if not specs:
        raise UserInputError("choose at least one seed")
    return specs[0].group_id, [executor.submit(s) for s in specs]


def best_run(group_id: str, paths: WorkspacePaths | None = None) -> RunRecord | None:
    """The succeeded run of a group with the lowest validation loss (it picked the best-MCC seed)."""
    done = [r for r in list_runs(paths, group_id=group_id, statuses=[SUCCEEDED]) if r.val_loss is not None]
    return min(done, key=lambda r: r.val_loss) if done else None


# --- starting, watching and reconciling processes ----------------------------------------------------

# Supervisors this process started: polled so they do not linger as zombies.
_CHILDREN: list[subprocess.Popen] = []


def start_queued(paths: WorkspacePaths, max_concurrent: int) -> list[str]:
    """Start supervisors for queued runs while a slot is free; returns the run ids started."""
    started = []
    for run in claim_queued(paths, max_concurrent):
        try:
            _launch_supervisor(run, paths, max_concurrent)
            started.append(run.id)
        except OSError as exc:
            finish_run(run.id, FAILED, paths, error=f"could not start the run: {exc}")
    return started


def _launch_supervisor(run: RunRecord, paths: WorkspacePaths, max_concurrent: int) -> None:
    log = Path(run.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MMCRL_HOME": str(paths.root), MAX_CONCURRENT_ENV: str(max_concurrent)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mmcrl_core.jobs", "supervise", run.id],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN.append(process)
    update_run(run.id, paths, supervisor_pid=process.pid, heartbeat_at=utc_now())


def _reap_children() -> None:
    _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]


def process_alive(pid: int | None, run_id: str) -> bool:
    """Whether pid is a live (not zombie) process belonging to this run."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and run_id in cmdline


def _signal_group(run: RunRecord, sig: int) -> None:
    """Signal the training process group (the child leads its own group, so pgid == pid)."""
    if process_alive(run.pid, run.id):
        try:
            os.killpg(run.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reconcile(paths: WorkspacePaths | None = None, max_concurrent: int | None = None) -> None:
    paths = paths or default_paths()
    _reap_children()
    for run in list_runs(paths, statuses=[RUNNING], kind=None):
        if run.executor != LocalSubprocessExecutor.name:
            continue  # another executor (Ray) watches its own runs
        if process_alive(run.supervisor_pid, run.id):
            continue  # it reports for itself
        child_alive = process_alive(run.pid, run.id)
        if run.cancel_requested_at:
            if child_alive and seconds_since(run.cancel_requested_at) > CANCEL_GRACE_S:
                _signal_group(run, signal.SIGKILL)
            elif not child_alive:
                _conclude(run, paths, exit_code=None)
            continue
        if child_alive:
            continue  # supervisor gone, training goes on; judged by its folder when it ends
        if run.supervisor_pid is None and seconds_since(run.heartbeat_at) < STALE_S:
            continue  # being started right now
        _conclude(run, paths, exit_code=None)
    start_queued(paths, max_concurrent or default_max_concurrent())


def _conclude(run: RunRecord, paths: WorkspacePaths, exit_code: int | None) -> None:
    """Record the final status of a run whose training process has ended."""
    tail = read_tail(run.log_path, TAIL_LINES)
    run = get_run(run.id, paths) or run  # a cancel may have arrived meanwhile
    folder = Path(run.out_dir)
    manifest = _read_manifest(folder)
    if manifest is not None and exit_code in (0, None):
        if run.log_path and Path(run.log_path).is_file():
            shutil.copyfile(run.log_path, folder / RUN_LOG)
        finish_run(
            run.id, SUCCEEDED, paths, exit_code=exit_code, val_loss=_manifest_val_loss(manifest),
            metrics=manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else None,
            device=_manifest_device(manifest),
        )
        return
    remove_partial_folders(paths, run.id)
    if run.cancel_requested_at:
        finish_run(run.id, CANCELLED, paths, exit_code=exit_code, error="cancelled by the user")
    elif exit_code is None:
        finish_run(run.id, FAILED, paths, error=_with_tail(DIED_REASON, tail))
    elif exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else str(-exit_code)
        why = " (kill -9 or the out-of-memory killer)" if -exit_code == signal.SIGKILL else ""
        finish_run(run.id, FAILED, paths, exit_code=exit_code,
                   error=_with_tail(f"training process was killed by signal {name}{why}", tail))
    elif exit_code == 0:
        finish_run(run.id, FAILED, paths, exit_code=0,
                   error=_with_tail("training exited without writing its run folder", tail))
    else:
        kind = "bad input" if exit_code == 2 else "training failed"
        finish_run(run.id, FAILED, paths, exit_code=exit_code,
                   error=_with_tail(f"{kind} (exit code {exit_code})", tail))


def _with_tail(reason: str, tail: str) -> str:
    return f"{reason}; last output:\n{tail}" if tail else f"{reason}; no output was written"


def _read_manifest(folder: Path) -> dict | None:
    """The run folder's manifest, or None when the folder is absent or incomplete."""
    # imported here: runfolder pulls in pandas, which the supervisor does not otherwise need
    from .runfolder import RunFolderError, read_manifest

    try:
        return read_manifest(folder)
    except (RunFolderError, json.JSONDecodeError):
        return None


def _manifest_val_loss(manifest: dict) -> float | None:
    metrics = manifest.get("metrics") or {}
    for key in ("best_val_loss", "val_loss"):
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def _manifest_device(manifest: dict) -> str | None:
    device = manifest.get("device")
    if isinstance(device, dict):
        device = device.get("name") or device.get("type")
    return str(device) if device else None


# --- the supervisor process ---------------------------------------------------------------------------


def supervise(run_id: str, paths: WorkspacePaths | None = None) -> int:
    """Run one claimed run's training command to the end and record how it ended."""
    paths = paths or default_paths()
    max_concurrent = default_max_concurrent()
    run = get_run(run_id, paths)
    if run is None or run.status != RUNNING:
        return 0
    if run.cancel_requested_at:
        _conclude(run, paths, exit_code=None)
        start_queued(paths, max_concurrent)
        return 0
    threads = str(run.threads or threads_per_run(max_concurrent))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    with open(run.log_path, "ab") as output:
        try:
            child = subprocess.Popen(
                run.command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            finish_run(run_id, FAILED, paths, error=f"could not start training: {exc}")
            start_queued(paths, max_concurrent)
            return 1
    update_run(run_id, paths, pid=child.pid, heartbeat_at=utc_now())
    watch_training(child, run_id, paths)
    _kill_group(child.pid, signal.SIGKILL)  # leftovers of the group (worker processes)
    _conclude(get_run(run_id, paths), paths, exit_code=child.returncode)
    start_queued(paths, max_concurrent)
    return 0


def watch_training(child: subprocess.Popen, run_id: str, paths: WorkspacePaths) -> None:
    """Wait for a training process, beating the heart and acting on a cancel request (SIGTERM to
    its process group, SIGKILL after CANCEL_GRACE_S). Every executor's supervisor uses this."""
    terminated = killed = False
    last_beat = time.monotonic()
    while True:
        try:
            child.wait(timeout=0.5)  # short, so a cancel is acted on within a second
            return
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - last_beat >= HEARTBEAT_S:
            heartbeat(run_id, paths)
            last_beat = time.monotonic()
        record = get_run(run_id, paths)
        requested = record.cancel_requested_at if record else None
        if requested and not terminated:
            _kill_group(child.pid, signal.SIGTERM)
            terminated = True
        if requested and not killed and seconds_since(requested) > CANCEL_GRACE_S:
            _kill_group(child.pid, signal.SIGKILL)
            killed = True


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmcrl_core.jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("supervise", help="run one claimed run to the end (started by the executor)").add_argument(
        "run_id"
    )
    commands.add_parser("reconcile", help="mark dead runs failed and start queued runs")
    args = parser.parse_args(argv)
    if args.command == "supervise":
        return supervise(args.run_id)
    reconcile()
    return 0


if __name__ == "__main__":
    sys.exit(main())
