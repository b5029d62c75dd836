"""Benchmarks as background jobs: the page's "Run benchmark" button, the registry row, progress.

A benchmark is a row of the workspace registry's `runs` table with kind = 'benchmark', run by the
same local executor as training (jobs.py: queue, concurrency limit, detached supervisor, cancel,
reconcile). Its command is

    python -m mmcrl_core.benchmark_jobs execute BENCH_ID

which runs the benchmark command line, `python -m mmcrl_core benchmark --suite S --setting NAME
--seeds N --methods ... --out models/benchmarks/BENCH_ID`, through the CLI's own entry point in
the same process (so the page's numbers are the command line's numbers by construction), records
every scored estimate for the plots (benchmark_artifacts), and finally writes manifest.json into the
results folder: the executor counts a job as succeeded when its out_dir holds a manifest.

Custom simulator settings cannot be named on the command line (it takes setting names), so the
job registers them under their own name in simulate.SETTINGS inside its process before calling
the CLI; the settings are saved beside the results (settings.json) to be reproducible.

Progress: DIR/progress.json ({"done", "total", "message"}) counts scored estimates; the log's last
line (the CLI's progress bar, e.g. "mmcrl seed 1 epoch 57") says what is running now.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .benchmark import SETTING_NAME
from .errors import UserInputError
from .run_store import (
    ACTIVE_STATUSES,
    OUTPUT_LOG,
    QUEUED,
    SUCCEEDED,
    RunRecord,
    get_run,
    job_folder,
    list_runs,
    log_path,
    new_run_id,
    read_tail,
    require_run,
)
from .simulate import SETTINGS, SimulationSettings, resolve_settings
from .store import connect, transaction, utc_now
from .workspace import WorkspacePaths, default_paths

KIND = "benchmark"
REQUEST_FILE = "request.json"
SETTINGS_FILE = "settings.json"
MANIFEST = "manifest.json"
RESULTS_CSV = "results.csv"
PROGRESS_FILE = "progress.json"


class BenchmarkRequest(BaseModel):
    """What the user asked for. `custom` (full simulator settings) wins over the named `setting`."""

    model_config = ConfigDict(extra="forbid")

    setting: str = "tiny"
    custom: SimulationSettings | None = None
    suite: str = Field("quick", description="benchmark suite: training budget and sample size (benchmark.SUITES)")
    seeds: int = Field(1, ge=1, le=20, description="data seeds 0 .. seeds-1")
    methods: list[str] | None = Field(None, description="None: the suite's methods")
    name: str | None = None

    @field_validator("setting")
    @classmethod
    def _known_setting(cls, value: str) -> str:
        if value not in SETTINGS:
            raise ValueError(f"unknown setting {value!r}; choose one of {', '.join(SETTINGS)}")
        return value

    @field_validator("custom")
    @classmethod
    def _custom_name(cls, value: SimulationSettings | None) -> SimulationSettings | None:
        if value is None:
            return value
        if value.name in SETTINGS and SETTINGS[value.name] != value:
            raise ValueError(f"custom settings may not reuse the name of the named setting {value.name!r}")
        if not SETTING_NAME.match(value.name):  # the CLI's rule for --settings-file
            raise ValueError(
                f"custom setting name {value.name!r}: start with a letter, then letters, digits, '_', '-', "
                "'.' or '+' (at most 41 characters)"
            )
        value.sizes()  # sizes that do not fit together fail here, not in the background
        return value

    @property
    def setting_name(self) -> str:
        return self.custom.name if self.custom is not None else self.setting

    def settings(self) -> SimulationSettings:
        return self.custom if self.custom is not None else resolve_settings(self.setting)

    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.setting_name}, {self.seeds} seed{'s' if self.seeds != 1 else ''} ({self.suite})"


def validate_request(request: BenchmarkRequest) -> BenchmarkRequest:
    """Check suite and methods against what the benchmark offers (UserInputError if not)."""
    from .benchmark import METHODS, SUITES

    if request.suite not in SUITES:
        raise UserInputError(f"unknown suite {request.suite!r}; choose one of {', '.join(SUITES)}")
    unknown = [m for m in request.methods or [] if m not in METHODS]
    if unknown:
        raise UserInputError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if request.methods is not None and not request.methods:
        raise UserInputError("choose at least one method")
    return request


def benchmark_arguments(request: BenchmarkRequest, out_dir: Path | str) -> list[str]:
    """argv of `python -m mmcrl_core` for this request, starting with the command name.

    A custom setting is read from out_dir/settings.json (written by the job before it runs).
    """
    args = ["benchmark", "--suite", request.suite]
    if request.custom is not None:
        args += ["--settings-file", str(Path(out_dir) / SETTINGS_FILE), "--n", str(request.custom.n)]
    else:
        args += ["--setting", request.setting]
    args += ["--seeds", str(request.seeds)]
    if request.methods:
        args += ["--methods", *request.methods]
    return [*args, "--save-estimates", "--out", str(out_dir)]


def cli_command(request: BenchmarkRequest, out_dir: Path | str) -> str:
    """The command line to repeat this benchmark, shown on the page."""
    return "python -m mmcrl_core " + " ".join(shlex.quote(a) for a in benchmark_arguments(request, out_dir))


def expected_estimates(request: BenchmarkRequest) -> int:
    """How many estimates (results.csv rows) the benchmark will score per the whole request:
    one per method and data seed; mmcrl one per training seed plus the reported (selected) one."""
    from .benchmark import SUITES

    options = SUITES[request.suite]
    methods = request.methods or list(options.methods)
    per_seed = sum(options.mmcrl_seeds + 1 if m == "mmcrl" else 1 for m in methods)
    return per_seed * request.seeds


def results_dir(paths: WorkspacePaths, bench_id: str) -> Path:
    return paths.benchmarks_dir / bench_id


# ----------------------------------------------------------------------------- submitting


def submit_benchmark(request: BenchmarkRequest, paths: WorkspacePaths | None = None,
                     max_concurrent: int | None = None) -> str:
    """Queue a benchmark; the local executor starts it when a slot is free. Returns its id."""
    from .jobs import default_max_concurrent, start_queued, threads_per_run

    paths = paths or default_paths()
    validate_request(request)
    bench_id = f"bench-{new_run_id()}"
    jobs = job_folder(paths, bench_id)
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / REQUEST_FILE).write_text(request.model_dump_json(indent=2), encoding="utf-8")
    command = [sys.executable, "-m", "mmcrl_core.benchmark_jobs", "execute", bench_id]
    max_concurrent = max_concurrent or default_max_concurrent()
    with connect(paths) as conn, transaction(conn):
        conn.execute(
            "INSERT INTO runs (id, name, kind, status, executor, created_at, device, spec, command, out_dir, "
            "log_path, threads) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                bench_id, request.label(), KIND, QUEUED, "local", utc_now(), "cpu",
                request.model_dump_json(), json.dumps(command), str(results_dir(paths, bench_id)),
                str(jobs / OUTPUT_LOG), threads_per_run(max_concurrent),
            ),
        )
    start_queued(paths, max_concurrent)
    return bench_id


def cancel_benchmark(bench_id: str, paths: WorkspacePaths | None = None) -> RunRecord:
    from .jobs import LocalSubprocessExecutor

    get_benchmark(bench_id, paths)
    return LocalSubprocessExecutor(paths).cancel(bench_id)


def refresh(paths: WorkspacePaths | None = None) -> None:
    """Mark dead jobs failed and start queued ones (the executor's reconcile)."""
    from .jobs import reconcile

    reconcile(paths or default_paths())


def list_benchmarks(paths: WorkspacePaths | None = None) -> list[RunRecord]:
    """Every benchmark in the workspace, newest first."""
    return list_runs(paths or default_paths(), kind=KIND)


def command_line_folders(paths: WorkspacePaths | None = None) -> list[Path]:
    """Benchmark folders in the workspace written by the command line (results.csv, no registry row),
    e.g. `make benchmark` -> models/benchmarks/quick; newest first."""
    paths = paths or default_paths()
    if not paths.benchmarks_dir.is_dir():
        return []
    registered = {r.id for r in list_benchmarks(paths)}
    folders = [f for f in paths.benchmarks_dir.iterdir()
               if f.is_dir() and f.name not in registered and (f / RESULTS_CSV).is_file()]
    return sorted(folders, key=lambda f: (f / RESULTS_CSV).stat().st_mtime, reverse=True)


def get_benchmark(bench_id: str, paths: WorkspacePaths | None = None) -> RunRecord:
    run = require_run(bench_id, paths)
    if run.kind != KIND:
        raise UserInputError(f"{bench_id} is a training run, not a benchmark")
    return run


def request_of(run: RunRecord) -> BenchmarkRequest:
    return BenchmarkRequest.model_validate(run.spec)


def delete_benchmark(bench_id: str, paths: WorkspacePaths | None = None) -> None:
    paths = paths or default_paths()
    run = get_benchmark(bench_id, paths)
    if run.status in ACTIVE_STATUSES:
        raise UserInputError(f"benchmark {bench_id} is {run.status}; cancel it before deleting it")
    with connect(paths) as conn, transaction(conn):
        conn.execute("DELETE FROM runs WHERE id = ?", (bench_id,))
    shutil.rmtree(results_dir(paths, bench_id), ignore_errors=True)
    shutil.rmtree(job_folder(paths, bench_id), ignore_errors=True)


# ----------------------------------------------------------------------------- progress and results


@dataclass
class BenchmarkProgress:
    fraction: float
    message: str


def read_progress(run: RunRecord) -> BenchmarkProgress:
    """How far a benchmark has got: scored estimates out of those planned, and what runs now."""
    if run.status == SUCCEEDED:
        return BenchmarkProgress(1.0, "finished")
    if run.status == QUEUED:
        return BenchmarkProgress(0.0, "waiting for a free slot (other runs are using the CPU)")
    fraction, message = 0.0, ""
    progress_file = Path(run.out_dir) / PROGRESS_FILE
    if progress_file.is_file():
        try:
            data = json.loads(progress_file.read_text(encoding="utf-8"))
            total = max(1, int(data.get("total") or 1))
            fraction = min(1.0, int(data.get("done") or 0) / total)
            message = str(data.get("message") or "")
        except (ValueError, TypeError, OSError):
            pass
    now = readable_log_line(read_tail(log_path(run), 1))
    if now and message == SIMULATING and not fraction:
        message = ""  # the log already says which method runs: the data were simulated
    return BenchmarkProgress(fraction, "; ".join(filter(None, [message, now])) or "starting")


# a tqdm bar as the benchmark CLI prints it: "tiny seed 0:  25%|##   | 1/4 [00:08<00:24, 8.1s/method, pca]"
_TQDM = re.compile(r"^(?P<desc>.*?):?\s*\d+%\|.*?\|\s*(?P<done>\d+)/(?P<total>\d+)\s*\[(?P<inside>[^\]]*)\]\s*$")


def readable_log_line(line: str) -> str:
    """The benchmark log's last line as a person reads it: progress bars become 'method 2 of 4: pca',
    and the closing 'wrote <paths>' line becomes a short note."""
    line = line.strip()
    match = _TQDM.match(line)
    if match:
        parts = [p.strip() for p in match["inside"].split(",")]
        doing = ", ".join(parts[2:])  # after elapsed<remaining and the rate comes what runs now
        done, total = int(match["done"]), int(match["total"])
        step = f"method {min(done + 1, total)} of {total}" + (f": {doing}" if doing else "")
        return f"{match['desc'].strip()}, {step}" if match["desc"].strip() else step
    if line.startswith("wrote "):
        return "writing the results"
    return line


def read_results(run_or_dir: RunRecord | Path | str) -> pd.DataFrame:
    """results.csv of a benchmark (columns setting, method, seed, mcc, ...)."""
    out = Path(run_or_dir.out_dir if isinstance(run_or_dir, RunRecord) else run_or_dir)
    path = out / RESULTS_CSV
    if not path.is_file():
        raise UserInputError(f"{out} has no {RESULTS_CSV}: the benchmark has not finished")
    return pd.read_csv(path)


def log_tail(run: RunRecord, lines: int = 20) -> str:
    return read_tail(log_path(run), lines)


# ----------------------------------------------------------------------------- the job itself


SIMULATING = "simulating the data"


def _write_progress(out: Path, done: int, total: int, message: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{PROGRESS_FILE}.tmp"
    staging.write_text(json.dumps({"done": done, "total": total, "message": message}), encoding="utf-8")
    staging.replace(out / PROGRESS_FILE)  # readers never see half a file


def execute(bench_id: str, paths: WorkspacePaths | None = None) -> int:
    """Run one benchmark request to a complete results folder; returns the CLI's exit code.

    Runs under the executor's supervisor, which records the exit code and final status.
    """
    from . import benchmark, cli

    paths = paths or default_paths()
    run = get_run(bench_id, paths)
    if run is None:
        print(f"error: no benchmark {bench_id} in {paths.root}", file=sys.stderr)
        return 2
    request = validate_request(request_of(run))
    out = results_dir(paths, bench_id)
    out.mkdir(parents=True, exist_ok=True)
    # the settings behind the numbers, kept beside them; a custom setting's command line reads this file
    (out / SETTINGS_FILE).write_text(request.settings().model_dump_json(indent=2), encoding="utf-8")
    (out / REQUEST_FILE).write_text(request.model_dump_json(indent=2), encoding="utf-8")
    argv = benchmark_arguments(request, out)
    print("running: " + cli_command(request, out), flush=True)
    total = expected_estimates(request)
    _write_progress(out, 0, total, SIMULATING)
    scored = 0

    def on_estimate(estimate: benchmark.ScoredEstimate) -> None:
        nonlocal scored
        scored += 1
        _write_progress(out, scored, total, f"{scored} of {total} estimates scored ({estimate.setting} seed "
                        f"{estimate.seed}, {estimate.method})")

    args = cli.build_parser(only="benchmark").parse_args(argv)
    try:
        code = benchmark.run_command(args, on_estimate=on_estimate)
    except UserInputError as exc:  # as `python -m mmcrl_core` reports it: message, exit code 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if code != 0:
        return code
    results = read_results(out)
    manifest = {
        "run_id": bench_id,
        "kind": KIND,
        "status": "succeeded",
        "request": json.loads(request.model_dump_json()),
        "command": cli_command(request, out),
        "metrics": summary_metrics(results),
        "device": "cpu",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return 0


def summary_metrics(results: pd.DataFrame) -> dict:
    """Mean scores per reported method, kept in the registry so listings need not read every folder."""
    numeric = [c for c in ("mcc", "mcc_spearman", "r2", "shd", "cross_f1") if c in results.columns]
    if "method" not in results.columns or not numeric:
        return {}
    reported = results[~results["method"].astype(str).str.contains("#")]
    means = reported.groupby("method")[numeric].mean()
    return {str(m): {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()}
            for m, row in means.iterrows()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmcrl_core.benchmark_jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("execute", help="run one queued benchmark (started by the executor)").add_argument("bench_id")
    args = parser.parse_args(argv)
    return execute(args.bench_id)


if __name__ == "__main__":
    sys.exit(main())
