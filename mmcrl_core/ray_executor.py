"""The Ray executor: each run becomes a Ray task with its own CPU / GPU request.

    get_executor("ray")                       # a local Ray with this machine's cores (and GPUs)
    MMCRL_RAY_ADDRESS=HEAD:6379 ...           # or an existing cluster (also "auto", "ray://HEAD:10001")

Ray is an optional extra (requirements-ray.txt): this module imports it only when an executor is
made, and registers "ray" with jobs.register_executor only when it is installed.

What stays as with the local executor, and why: the registry is the single source of truth, so
the app's progress bars, cancel button and failure messages need no Ray-specific code. A run is
registered as queued with its exact train command; Ray decides when and where it starts (it waits
for the resources it asked for). The task then moves its run from queued to running (only if it
was not cancelled meanwhile), runs the same `python -m mmcrl_core train ... --run-id ID` command
in its own process group, beats the heart, acts on a cancel flag within a second (SIGTERM, then
SIGKILL after jobs.CANCEL_GRACE_S), and records the end exactly as the local supervisor does
(jobs._conclude: exit code, final status, last output). Progress is written by the training
process itself through run_store.progress_reporter.

On a cluster the workspace (MMCRL_HOME) and the data files must be on a file system every node
sees at the same path, and every node needs mmcrl's Python dependencies; mmcrl's own code is
shipped with the task (Ray's py_modules). Ray tasks end with the process that submitted them (the
app, or `python -m mmcrl_core sweep`): runs still queued then are marked failed on its way out;
a run whose task died is marked failed once its heartbeat stops (jobs.STALE_S).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from .config import RunSpec
from .errors import UserInputError
from .jobs import (
    STALE_S,
    LocalSubprocessExecutor,
    _conclude,
    _kill_group,
    cpu_cores,
    register_executor,
    train_command,
    watch_training,
)
from .run_store import (
    FAILED,
    QUEUED,
    RUNNING,
    RunRecord,
    create_run,
    finish_run,
    get_run,
    list_runs,
    seconds_since,
    set_command,
    update_run,
)
from .store import connect, utc_now
from .workspace import REPO_ROOT, WorkspacePaths

EXECUTOR_NAME = "ray"
ADDRESS_ENV = "MMCRL_RAY_ADDRESS"
CPUS_PER_RUN_ENV = "MMCRL_RAY_CPUS_PER_RUN"
GPUS_PER_RUN_ENV = "MMCRL_RAY_GPUS_PER_RUN"
OBJECT_STORE_ENV = "MMCRL_RAY_OBJECT_STORE_MB"
# Tasks carry run ids, not data (the data is read from the shared file system): a small object
# store is plenty, and Ray's default (30% of memory) is not ours to take on a shared machine.
DEFAULT_OBJECT_STORE_MB = 256
NAMESPACE = "mmcrl"
PACKAGE_DIR = Path(__file__).resolve().parent


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _float_env(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise UserInputError(f"{name}={value!r} must be a number such as 1 or 0.5") from None


def connect_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """The `ray` module, connected: to `address` or MMCRL_RAY_ADDRESS when given, else to a local
    Ray started here with `num_cpus` (default: this process's cores) and no dashboard."""
    if not ray_installed():
        raise UserInputError(
            "the Ray executor needs the optional Ray extra: pip install -r requirements-ray.txt"
        )
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get(ADDRESS_ENV) or None
    if address:
        # the cluster's nodes get this package with each task; its dependencies must be installed there
        ray.init(address=address, namespace=NAMESPACE, runtime_env={"py_modules": [str(PACKAGE_DIR)]},
                 log_to_driver=False)
    else:
        object_store_mb = int(_float_env(OBJECT_STORE_ENV, DEFAULT_OBJECT_STORE_MB))
        ray.init(
            num_cpus=num_cpus or cpu_cores(),
            num_gpus=num_gpus,
            object_store_memory=object_store_mb * 2**20,
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        )
    return ray


class RayExecutor(LocalSubprocessExecutor):
    """Runs each training as a Ray task. Cancel and the registry bookkeeping are the local
    executor's (a cancel is a flag in the registry that the task acts on)."""

    name = EXECUTOR_NAME

    def __init__(
        self,
        paths: WorkspacePaths | None = None,
        address: str | None = None,
        cpus_per_run: float | None = None,
        gpus_per_run: float | None = None,
        num_cpus: int | None = None,
        command_prefix: list[str] | None = None,
    ):
        super().__init__(paths, max_concurrent=1, command_prefix=command_prefix)
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_run = cpus_per_run or _float_env(CPUS_PER_RUN_ENV, 1.0)
        self.gpus_per_run = gpus_per_run if gpus_per_run is not None else _float_env(GPUS_PER_RUN_ENV, None)
        self._ray = None

    @property
    def ray(self):
        if self._ray is None:
            self._ray = connect_ray(self.address, self.num_cpus)
        return self._ray

    def resources(self, spec: RunSpec) -> dict:
        """Ray resources of one run: its threads as CPUs, a GPU when it trains on CUDA (or as set)."""
        cpus = float(spec.train.threads or self.cpus_per_run)
        gpus = self.gpus_per_run
        if gpus is None:
            gpus = 1.0 if spec.train.device == "cuda" else 0.0
        return {"num_cpus": cpus, "num_gpus": gpus}

    def submit(self, spec: RunSpec) -> str:
        ray = self.ray
        resources = self.resources(spec)
        threads = max(1, int(resources["num_cpus"]))
        run = create_run(spec, paths=self.paths, executor=self.name, threads=threads)
        set_command(run.id, train_command(run.run_spec, self.paths, threads, self.command_prefix), self.paths)
        task = _remote_task(ray).options(**resources, name=f"mmcrl-train-{run.id}")
        _SUBMITTED[run.id] = (self.paths, task.remote(run.id, str(self.paths.root)))
        return run.id

    def cancel(self, run_id: str) -> RunRecord:
        run = super().cancel(run_id)
        submitted = _SUBMITTED.get(run_id)
        if submitted is not None and run.status != RUNNING:
            self.ray.cancel(submitted[1])  # drop it from Ray's queue; a started task sees the flag
        return run

    def reconcile(self) -> None:
        reconcile_ray_runs(self.paths)


# run id -> (workspace, ObjectRef) of the tasks this process submitted
_SUBMITTED: dict[str, tuple[WorkspacePaths, object]] = {}
_REMOTE: dict[str, object] = {}


def _remote_task(ray):
    """`run_in_ray_task` as a Ray remote function, made once per process (Ray exports it once)."""
    if "task" not in _REMOTE:
        # no retries: a rerun would start training again from scratch in the same run folder
        _REMOTE["task"] = ray.remote(max_retries=0)(run_in_ray_task)
    return _REMOTE["task"]


def reconcile_ray_runs(paths: WorkspacePaths) -> None:
    """Record what the tasks cannot: a task that raised or whose worker died, a run whose heartbeat
    stopped (its node or its submitting process is gone)."""
    _collect_finished_tasks()
    for run in list_runs(paths, statuses=[RUNNING], kind=None):
        if run.executor == EXECUTOR_NAME and run.id not in _SUBMITTED and seconds_since(run.heartbeat_at) > STALE_S:
            _conclude(run, paths, exit_code=None)


def _collect_finished_tasks() -> None:
    if not _SUBMITTED:
        return
    import ray  # installed: tasks were submitted

    if not ray.is_initialized():  # Ray was shut down and its tasks with it: heartbeats tell the rest
        _SUBMITTED.clear()
        return
    refs = {ref: run_id for run_id, (_, ref) in _SUBMITTED.items()}
    done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
    for ref in done:
        run_paths, _ = _SUBMITTED.pop(refs[ref])
        try:
            ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            pass  # cancelled while queued: the registry already says so
        except Exception as exc:  # noqa: BLE001 - any failure of the task is the run's failure
            finish_run(refs[ref], FAILED, run_paths, error=f"the Ray task failed: {exc}")


def _fail_queued_on_exit() -> None:
    """Ray drops a driver's pending tasks when it exits: say so in the registry."""
    for run_id, (paths, _) in list(_SUBMITTED.items()):
        if not paths.registry_path.is_file():
            continue  # the workspace is gone (a test's temporary folder)
        run = get_run(run_id, paths)
        if run is not None and run.status == QUEUED:
            finish_run(run_id, FAILED, paths,
                       error="the process that submitted this run to Ray ended before the run started")


atexit.register(_fail_queued_on_exit)


# --- inside the Ray task ------------------------------------------------------------------------------


def _claim(run_id: str, paths: WorkspacePaths) -> bool:
    """queued -> running, unless it was cancelled (or claimed) meanwhile."""
    now = utc_now()
    with connect(paths) as conn:
        cursor = conn.execute(
            "UPDATE runs SET status = ?, started_at = ?, heartbeat_at = ? WHERE id = ? AND status = ?",
            (RUNNING, now, now, run_id, QUEUED),
        )
        return cursor.rowcount == 1


def _command_on_this_node(command: list[str]) -> list[str]:
    """The submitting machine's Python may live elsewhere than this node's: use this node's."""
    if len(command) > 2 and command[1:3] == ["-m", "mmcrl_core"]:
        return [sys.executable, *command[1:]]
    return command


def run_in_ray_task(run_id: str, workspace_root: str) -> str:
    """The body of a run's Ray task: train, supervise, record how it ended; returns the status."""
    os.environ["MMCRL_HOME"] = workspace_root  # the training process reports progress there
    paths = WorkspacePaths(Path(workspace_root))
    if not _claim(run_id, paths):
        return getattr(get_run(run_id, paths), "status", "missing")  # cancelled before it started
    run = get_run(run_id, paths)
    command = _command_on_this_node(run.command)
    threads = str(run.threads or 1)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    Path(run.log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(run.log_path, "ab") as output:
        try:
            child = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            finish_run(run_id, FAILED, paths, error=f"could not start training on a Ray node: {exc}")
            return FAILED
    update_run(run_id, paths, pid=child.pid, heartbeat_at=utc_now(), command=json.dumps(command))
    try:
        watch_training(child, run_id, paths)
    except BaseException:  # ray.cancel(force=False) or a dying worker: take the training with us
        _kill_group(child.pid, signal.SIGKILL)
        raise
    _kill_group(child.pid, signal.SIGKILL)  # leftovers of the group (worker processes)
    _conclude(get_run(run_id, paths), paths, exit_code=child.returncode)
    return get_run(run_id, paths).status


if ray_installed():
    register_executor(EXECUTOR_NAME, RayExecutor)

