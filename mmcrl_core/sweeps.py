"""Sweeps: several seeds, bootstrap resamples and a grid over latents per modality, as one group.

    python -m mmcrl_core sweep sleep=sleep.csv blood=blood.csv --seeds 0,1,2 --bootstraps 10 \\
        --latents-grid sleep=2,3,4 blood=2,3 --executor ray

What a sweep is made of (all runs share one group id, so the Runs page shows them together):
- for every latent setting of the grid (every combination of the per-modality values), one run
  per seed on the data as given: their validation losses choose the number of latents
  (METHOD 2.3: the setting with the lowest validation loss of its best seed);
- for every latent setting, `bootstraps` runs on resamples of the subjects drawn with
  replacement (seed: the first seed), written as Parquet next to the sweep. A subject drawn twice
  gets its id suffixed ("17", "17#2"), because subject ids must be unique; latent matching in
  stability.py uses the ids both runs share, so each subject counts once. Bootstrap runs do not
  vote on the number of latents: a repeated subject can sit in both the training and the
  validation rows, which flatters its validation loss.
- `summarise` reads the finished group: the latent choice table, and stability.py's latent
  stability and edge support over every run (seeds and bootstraps) of the chosen setting.

Which run is which lives in models/.sweeps/<group_id>/sweep.json, written when the sweep starts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataSource, ModalitySpec, RunSpec, TrainConfig
from .errors import UserInputError
from .jobs import Executor, get_executor, group_specs
from .run_setup import latent_grid
from .run_store import SUCCEEDED, RunRecord, list_runs, new_run_id
from .workspace import WorkspacePaths, default_paths

SWEEPS_FOLDER = ".sweeps"
SWEEP_FILE = "sweep.json"
SEED_RUN, BOOTSTRAP_RUN = "seed", "bootstrap"


def sweep_folder(paths: WorkspacePaths, group_id: str) -> Path:
    return paths.models_dir / SWEEPS_FOLDER / group_id


def latent_settings(grid: Mapping[str, Sequence[int]] | None) -> list[dict[str, int]] | None:
    """Every combination of the per-modality values: {"a": [1, 2], "b": [2]} -> [{a:1,b:2}, {a:2,b:2}]."""
    if not grid:
        return None
    for modality, values in grid.items():
        if not values or any(int(k) < 1 for k in values):
            raise UserInputError(f"latent grid for {modality!r} must list whole numbers >= 1, got {list(values)}")
    return latent_grid({name: [int(k) for k in values] for name, values in grid.items()})


def setting_key(spec: RunSpec | Mapping) -> str:
    """'a=2,b=3': a run's latents per modality, in modality order."""
    modalities = spec.modalities if isinstance(spec, RunSpec) else RunSpec.model_validate(spec).modalities
    return ",".join(f"{m.name}={m.latents}" for m in modalities)


# --- bootstrap resamples ----------------------------------------------------------------------------


def resample_subjects(ids: Sequence[str], seed: int) -> list[tuple[str, str]]:
    """Subjects drawn with replacement, as (original id, id in the resample): a repeat gets '#2',
    '#3'... appended, because subject ids must be unique."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(ids, dtype=object)
    drawn = ids[rng.integers(0, len(ids), len(ids))]
    copies: dict[str, int] = {}
    out = []
    for subject in drawn:
        copies[subject] = copies.get(subject, 0) + 1
        out.append((subject, subject if copies[subject] == 1 else f"{subject}#{copies[subject]}"))
    return out


def write_bootstrap_tables(spec: RunSpec, seed: int, folder: Path) -> list[DataSource]:
    """Resample the spec's subjects with replacement and write each modality as Parquet in
    `folder`; returns the sources of the resampled data (same modality names)."""
    from .datasets import load_tables

    tables = load_tables(spec.sources, spec.id_column)
    drawn = resample_subjects(tables.subject_ids("mask"), seed)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for modality, frame in tables.tables.items():
        present = [(original, new) for original, new in drawn if original in frame.index]
        rows = frame.loc[[original for original, _ in present]].copy()
        rows.index = pd.Index([new for _, new in present], name=tables.id_column)
        path = folder / f"{modality}.parquet"
        rows.reset_index().to_parquet(path, index=False)
        sources.append(DataSource(modality=modality, path=str(path)))
    return sources


# --- planning and launching ---------------------------------------------------------------------------


@dataclass
class SweepMember:
    run_id: str
    role: str  # SEED_RUN or BOOTSTRAP_RUN
    seed: int
    setting: str  # setting_key
    bootstrap: int | None = None


@dataclass
class Sweep:
    group_id: str
    members: list[SweepMember] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return [m.run_id for m in self.members]

    def save(self, paths: WorkspacePaths) -> Path:
        folder = sweep_folder(paths, self.group_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / SWEEP_FILE
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, group_id: str, paths: WorkspacePaths | None = None) -> Sweep:
        paths = paths or default_paths()
        path = sweep_folder(paths, group_id) / SWEEP_FILE
        if not path.is_file():
            raise UserInputError(f"no sweep {group_id!r} in this workspace ({path} is missing)")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["group_id"], [SweepMember(**m) for m in data["members"]])


def launch_sweep(
    executor: Executor,
    spec: RunSpec,
    seeds: Sequence[int],
    bootstraps: int = 0,
    latent_grid: Mapping[str, Sequence[int]] | None = None,
) -> Sweep:
    """Submit every run of the sweep under one group id (see the module docstring)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise UserInputError("choose at least one seed")
    if bootstraps < 0:
        raise UserInputError(f"bootstraps must be 0 or more, not {bootstraps}")
    if bootstraps and not spec.sources:
        raise UserInputError("bootstrap resamples need the run's data files (spec.sources)")
    settings = latent_settings(latent_grid)
    unknown = sorted(set(latent_grid or {}) - {m.name for m in spec.modalities})
    if unknown:
        raise UserInputError(f"latent grid names modality {', '.join(unknown)}, which the data does not have")
    group_id = f"g-{new_run_id()}"
    sweep = Sweep(group_id)
    planned: list[tuple[RunSpec, str, int | None]] = [
        (s, SEED_RUN, None) for s in group_specs(spec, seeds, settings, group_id)
    ]
    folder = sweep_folder(executor.paths, group_id)
    for b in range(1, bootstraps + 1):
        sources = write_bootstrap_tables(spec, seed=b, folder=folder / f"bootstrap-{b}")
        resampled = spec.model_copy(update={"sources": sources, "dataset_id": spec.dataset_id})
        for s in group_specs(resampled, seeds[:1], settings, group_id):
            planned.append((s.model_copy(update={"name": f"{s.name} bootstrap {b}"}), BOOTSTRAP_RUN, b))
    for run_spec, role, b in planned:
        run_id = executor.submit(run_spec)
        sweep.members.append(SweepMember(run_id, role, run_spec.train.seed, setting_key(run_spec), b))
        sweep.save(executor.paths)  # after each submit, so a crash mid-launch still leaves a record
    return sweep


# --- reading a finished sweep -------------------------------------------------------------------------


@dataclass
class SweepSummary:
    group_id: str
    latent_choice: pd.DataFrame  # setting, seed_runs, succeeded, best_val_loss, mean_val_loss, chosen
    chosen_setting: str | None
    stability: object | None  # stability.StabilityReport over the chosen setting's runs
    failed: list[str] = field(default_factory=list)  # run ids that did not succeed


def choose_latents(members: Sequence[SweepMember], runs: Mapping[str, RunRecord]) -> pd.DataFrame:
    """Per latent setting, the validation losses of its seed runs; the lowest best loss is chosen."""
    rows = []
    for setting in dict.fromkeys(m.setting for m in members):
        losses = [
            runs[m.run_id].val_loss
            for m in members
            if m.setting == setting and m.role == SEED_RUN and m.run_id in runs
            and runs[m.run_id].status == SUCCEEDED and runs[m.run_id].val_loss is not None
        ]
        seed_runs = sum(m.setting == setting and m.role == SEED_RUN for m in members)
        rows.append({
            "setting": setting,
            "seed_runs": seed_runs,
            "succeeded": len(losses),
            "best_val_loss": min(losses) if losses else math.nan,
            "mean_val_loss": float(np.mean(losses)) if losses else math.nan,
        })
    table = pd.DataFrame(rows, columns=["setting", "seed_runs", "succeeded", "best_val_loss", "mean_val_loss"])
    finite = table["best_val_loss"].notna()
    table["chosen"] = False
    if finite.any():
        table.loc[table.loc[finite, "best_val_loss"].idxmin(), "chosen"] = True
    return table


def summarise(group_id: str, paths: WorkspacePaths | None = None) -> SweepSummary:
    """The latent choice and, for the chosen setting, latent stability and edge support."""
    from .stability import run_stability

    paths = paths or default_paths()
    sweep = Sweep.load(group_id, paths)
    runs = {r.id: r for r in list_runs(paths, group_id=group_id, kind=None)}
    choice = choose_latents(sweep.members, runs)
    chosen = choice.loc[choice["chosen"], "setting"].tolist()
    chosen_setting = chosen[0] if chosen else None
    folders = [
        Path(runs[m.run_id].out_dir)
        for m in sweep.members
        if m.setting == chosen_setting and m.run_id in runs and runs[m.run_id].status == SUCCEEDED
    ]
    report = run_stability(folders) if len(folders) >= 2 else None
    failed = [m.run_id for m in sweep.members if m.run_id not in runs or runs[m.run_id].status != SUCCEEDED]
    return SweepSummary(group_id, choice, chosen_setting, report, failed)


def write_summary(summary: SweepSummary, paths: WorkspacePaths) -> Path:
    """latent_choice.csv, latent_stability.csv and edge_support.csv next to sweep.json."""
    folder = sweep_folder(paths, summary.group_id)
    summary.latent_choice.to_csv(folder / "latent_choice.csv", index=False)
    if summary.stability is not None:
        summary.stability.latent_stability.to_csv(folder / "latent_stability.csv", index=False)
        summary.stability.edge_support.to_csv(folder / "edge_support.csv", index=False)
    return folder


def wait_for(executor: Executor, run_ids: Sequence[str], timeout: float, poll_s: float = 1.0) -> list[RunRecord]:
    return [executor.wait(run_id, timeout=timeout, poll_s=poll_s) for run_id in run_ids]


# --- command line -------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserInputError(f"{text!r}: give whole numbers separated by commas, such as 0,1,2") from None


def parse_latent_grid(items: Sequence[str] | None) -> dict[str, list[int]] | None:
    """['sleep=2,3,4', 'blood=2,3'] -> {'sleep': [2, 3, 4], 'blood': [2, 3]}."""
    if not items:
        return None
    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise UserInputError(f"--latents-grid {item!r}: write NAME=K,K,... such as sleep=2,3,4")
        grid[name.strip()] = _int_list(values)
    return grid


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    from .datasets import parse_latents, parse_source

    sources = [parse_source(item) for item in args.data]
    latents = parse_latents(args.latents)
    modalities = [
        ModalitySpec(name=s.modality, latents=latents.get(s.modality, 2) if isinstance(latents, dict) else (latents or 2))
        for s in sources
    ]
    train = TrainConfig(
        epochs=args.epochs, device=args.device, threads=args.threads,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )
    return RunSpec(name=args.name, id_column=args.id_column, sources=sources, modalities=modalities, train=train)


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="train several seeds, bootstrap resamples and a latent grid as one group",
        description="Submit one run per (latent setting, seed) and per (latent setting, bootstrap resample), "
                    "wait for them, choose the number of latents by validation loss and report latent "
                    "stability and edge support (written next to the sweep in models/.sweeps/GROUP/).")
    parser.add_argument("data", nargs="*", metavar="DATA", help="PATH or NAME=PATH per modality")
    parser.add_argument("--id-column", default=None)
    parser.add_argument("--latents", default=None, help="K for every modality, or NAME=K,... (default 2)")
    parser.add_argument("--latents-grid", nargs="*", metavar="NAME=K,K", help="values to try per modality")
    parser.add_argument("--seeds", default="0,1,2", help="seeds, comma separated (default 0,1,2)")
    parser.add_argument("--bootstraps", type=int, default=0, help="bootstrap resamples per latent setting")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="threads (and Ray CPUs) per run")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--name", default=None)
    parser.add_argument("--executor", default="local", help="local (default) or ray (needs requirements-ray.txt)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: MMCRL_RAY_ADDRESS, "
                                                             "else a local Ray)")
    parser.add_argument("--timeout", type=float, default=7 * 24 * 3600, help="seconds to wait for the runs")
    parser.add_argument("--summarise", metavar="GROUP_ID", default=None,
                        help="only summarise an existing sweep (no training)")
    parser.set_defaults(handler=_run_cli)


def executor_from_name(name: str, paths: WorkspacePaths | None = None, address: str | None = None) -> Executor:
    if name == "ray":
        from . import ray_executor  # registers "ray" when Ray is installed

        if not ray_executor.ray_installed():
            raise UserInputError("--executor ray needs the Ray extra: pip install -r requirements-ray.txt")
        return get_executor("ray", paths, address=address)
    return get_executor(name, paths)


def _run_cli(args: argparse.Namespace) -> int:
    paths = default_paths()
    if args.summarise:
        group_id = args.summarise
    else:
        if not args.data:
            raise UserInputError("give the data files (PATH or NAME=PATH per modality), or --summarise GROUP_ID")
        executor = executor_from_name(args.executor, paths, args.ray_address)
        sweep = launch_sweep(executor, spec_from_args(args), _int_list(args.seeds), args.bootstraps,
                             parse_latent_grid(args.latents_grid))
        print(f"sweep {sweep.group_id}: {len(sweep.members)} runs submitted to the {args.executor} executor",
              flush=True)
        # Ray tasks end with the process that submitted them, so the command waits for its runs
        for run in wait_for(executor, sweep.run_ids, args.timeout):
            print(f"  {run.id} {run.status}" + (f"  val_loss {run.val_loss:.4f}" if run.val_loss else ""),
                  flush=True)
        group_id = sweep.group_id
    summary = summarise(group_id, paths)
    folder = write_summary(summary, paths)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.latent_choice.to_string(index=False))
        if summary.stability is not None:
            print(summary.stability.latent_stability.to_string(index=False))
            print(summary.stability.edge_support.to_string(index=False))
    print(f"chosen latents: {summary.chosen_setting}; tables in {folder}")
    if summary.failed:
        print(f"{len(summary.failed)} run(s) did not succeed: {', '.join(summary.failed)}", file=sys.stderr)
        return 1
    return 0
