"""Benchmark suite: simulated data with known truth, every method scored the same way.

`run_single_setting(setting, seed, methods, suite)` simulates one data set and scores each method;
`run_benchmark(suite, seeds, out_dir, ...)` loops over settings and seeds and writes
DIR/results.csv (columns RESULT_COLUMNS first) and DIR/results.md (mean +- sd beside the paper's
numbers). Everything is seeded and runs on one torch thread, so the app's benchmark page and the
CLI give the same numbers for the same suite, setting and seed.

A setting is a name of simulate.SETTINGS or a SimulationSettings given by value (the CLI's
--settings-file). The suite fixes the number of subjects (quick: 10,000, except tiny); `n` / --n
overrides it for every setting.

Every scored estimate goes to an `on_estimate(ScoredEstimate)` callback, one call per results.csv
row (the reported "mmcrl" row repeats its selected training seed). With save_estimates /
--save-estimates the benchmark writes them itself, for the page's plots (layout in
benchmark_artifacts): DIR/estimates/<setting>/<seed>/truth/ and .../<method>/ (latents.csv,
adjacency.csv).

Graph columns: `shd` / `cross_f1` score each method's own graph read-out (mmcrl: its learned
adjacency; baselines: the Lasso read-out on their latents, see `graph_readout`). `*_pc` score PC on
the method's latents, `cross_f1_lasso` the Lasso read-out, and `cross_f1_all_edges_ref` the trivial
reference of predicting every allowed cross-modal edge: a read-out is only useful above it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from . import benchmark_artifacts, metrics
from .baselines import BASELINES, BENCHMARK_PC_ALPHA, lasso_readout, pc_readout
from .errors import UserInputError
from .paper_results import PAPER_RESULTS, SOURCE
from .simulate import SETTINGS, SimulatedData, SimulationSettings, resolve_settings, simulate

RESULT_COLUMNS = ["setting", "method", "seed", "mcc", "mcc_spearman", "r2", "shd", "cross_f1", "seconds"]
EXTRA_COLUMNS = [
    "mcc_global", "mcc_min_modality", "shd_cross", "cross_precision", "cross_recall", "cross_f1_skeleton",
    "graph_readout", "shd_pc", "cross_f1_pc", "cross_f1_lasso", "cross_f1_all_edges_ref",
    "train_seed", "selected", "best_val_loss", "n", "latents", "sparsity_condition",
]
METHODS = ["mmcrl", *BASELINES]

MIN_SUBJECTS = 100  # every method holds out a validation split; fewer subjects leave too little
# a setting given by value becomes a results.csv value and a folder name: keep it plain
SETTING_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.+-]{0,40}$")

ProgressFn = Callable[[dict], None]


@dataclass(frozen=True)
class ScoredEstimate:
    """One method's estimate on one simulated data set, as it was scored (one results.csv row)."""

    setting: str
    seed: int
    method: str  # as in results.csv: "pca", "mmcrl" (the selected training seed), "mmcrl#2", ...
    latents: pd.DataFrame  # subjects x the method's latents "<modality>:<k>"
    adjacency: pd.DataFrame  # the graph behind shd / cross_f1: learned, or the Lasso read-out
    truth: SimulatedData  # the data set, with the true latents and graph
    scores: dict  # the row's scores (mcc, r2, shd, ...)


EstimateFn = Callable[[ScoredEstimate], None]


@dataclass(frozen=True)
class SuiteOptions:
    """What a suite runs. n None: the setting's own sample size."""

    settings: tuple[str, ...]
    methods: tuple[str, ...]
    n: int | None = None
    mmcrl_seeds: int = 3  # training seeds per data set; the lowest validation loss is reported
    mmcrl_epochs: int = 300
    default_seeds: int = 3
    extra: dict = field(default_factory=dict)


SUITES: dict[str, SuiteOptions] = {
    # under 15 minutes on 2 CPU cores: the paper's three numerical cases at their n = 10,000, mmcrl
    # as the recovery targets define it (the lowest-validation-loss run of 3 seeds), and every
    # baseline (all of them together take about a minute)
    "quick": SuiteOptions(settings=("case1", "case2", "case3"), methods=("mmcrl", "pca", "ica", "betavae", "vae", "ae"),
                          n=10_000, mmcrl_seeds=3, mmcrl_epochs=300, default_seeds=1),
    # every numerical experiment of METHOD.md section 5 at the paper's sample sizes
    "paper": SuiteOptions(settings=tuple(s for s in SETTINGS if s != "tiny"), methods=tuple(METHODS),
                          mmcrl_seeds=3, mmcrl_epochs=300, default_seeds=3),
}


def _check_choices(values: Sequence[str], valid: Sequence[str], what: str) -> None:
    unknown = [v for v in values if v not in valid]
    if unknown:
        raise UserInputError(f"unknown {what} {', '.join(map(repr, unknown))}; valid {what}s: {', '.join(valid)}")


def _frame(values: np.ndarray, names: list[str], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=float), index=index, columns=names)


def score(sim: SimulatedData, latents: pd.DataFrame, adjacency: pd.DataFrame | None, seed: int) -> dict:
    """Every recovery score of one estimate against the simulator's truth."""
    return _evaluate(sim, latents, adjacency, seed)[0]


def _evaluate(sim: SimulatedData, latents: pd.DataFrame, adjacency: pd.DataFrame | None,
              seed: int) -> tuple[dict, pd.DataFrame]:
    """The scores, and the graph behind shd / cross_f1 (the learned one, else the Lasso read-out)."""
    truth, true_adj = sim.latents, sim.adjacency
    block = metrics.mcc_by_modality(truth, latents)
    spearman = metrics.mcc_by_modality(truth, latents, method="spearman")
    lasso = lasso_readout(latents, seed=seed)
    pc = pc_readout(latents, seed=seed)
    own = adjacency if adjacency is not None else lasso
    own_scores = metrics.graph_scores(true_adj, own, block.matching)
    pc_scores = metrics.graph_scores(true_adj, pc, block.matching)
    lasso_scores = metrics.graph_scores(true_adj, lasso, block.matching)
    scores = {
        "mcc": block.value,
        "mcc_spearman": spearman.value,
        "r2": metrics.kernel_ridge_r2(truth, latents, seed=seed),
        "shd": own_scores.shd,
        "cross_f1": own_scores.cross.f1,
        "mcc_global": block.global_value,
        "mcc_min_modality": block.min_modality,
        "shd_cross": own_scores.shd_cross,
        "cross_precision": own_scores.cross.precision,
        "cross_recall": own_scores.cross.recall,
        "cross_f1_skeleton": own_scores.cross_skeleton.f1,
        "graph_readout": "learned" if adjacency is not None else "lasso",
        "shd_pc": pc_scores.shd,
        "cross_f1_pc": pc_scores.cross.f1,
        "cross_f1_lasso": lasso_scores.cross.f1,
    }
    return scores, own


# a runner's output: one results row, with the latents and the graph that were scored
_Scored = tuple[dict, pd.DataFrame, pd.DataFrame]


def _run_mmcrl(sim: SimulatedData, seed: int, options: SuiteOptions, progress: ProgressFn | None) -> list[_Scored]:
    from .train import fit_seeds, select_best

    spec = sim.run_spec()
    spec = spec.model_copy(update={"train": spec.train.model_copy(
        update={"seed": seed, "epochs": options.mmcrl_epochs, "threads": 1, "device": "cpu"})})
    train_seeds = [seed * 1000 + i for i in range(options.mmcrl_seeds)]
    results = fit_seeds(sim.arrays(), spec, train_seeds, progress=progress)
    best = select_best(results)
    scored: list[_Scored] = []
    for i, result in enumerate(results):
        latents = _frame(result.latents, result.latent_names, sim.latents.index)
        adjacency = _frame(result.adjacency, result.latent_names, pd.Index(result.latent_names, name="parent"))
        row, graph = _evaluate(sim, latents, adjacency, seed)
        row.update(method=f"mmcrl#{i + 1}", seconds=result.seconds, train_seed=result.seed,
                   selected=result is best, best_val_loss=result.best_val_loss)
        scored.append((row, latents, graph))
    chosen_row, chosen_latents, chosen_graph = scored[results.index(best)]
    chosen = dict(chosen_row)
    chosen.update(method="mmcrl", seconds=sum(r.seconds for r in results))
    return [(chosen, chosen_latents, chosen_graph), *scored]


def _run_baseline(name: str, sim: SimulatedData, seed: int) -> list[_Scored]:
    spec = sim.run_spec()
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"seed": seed})})
    started = time.perf_counter()
    values, adjacency = BASELINES[name].fit_transform(sim.arrays(), spec)
    seconds = time.perf_counter() - started
    latents = _frame(values, spec.latent_names(), sim.latents.index)
    row, graph = _evaluate(sim, latents, adjacency, seed)
    row.update(method=name, seconds=seconds, train_seed=seed)
    return [(row, latents, graph)]


def _resolve(setting: str | SimulationSettings) -> SimulationSettings:
    if isinstance(setting, SimulationSettings):
        return setting
    _check_choices([setting], list(SETTINGS), "setting")
    return resolve_settings(setting)


def _subjects(settings: SimulationSettings, options: SuiteOptions, n: int | None) -> int | None:
    """Subjects to simulate: n if given, else the suite's (tiny keeps its own: a smoke test), else the setting's."""
    if n is not None:
        if int(n) < MIN_SUBJECTS:
            raise UserInputError(f"--n {n}: simulate at least {MIN_SUBJECTS} subjects "
                                 "(every method holds out a validation split)")
        return int(n)
    return options.n if settings.name != "tiny" else None


def run_single_setting(
    setting: str | SimulationSettings,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    suite: str = "quick",
    progress: ProgressFn | None = None,
    n: int | None = None,
    on_estimate: EstimateFn | None = None,
) -> pd.DataFrame:
    """Simulate `setting` with `seed` and score each method; one row per method (mmcrl: also per seed).

    n overrides the number of subjects; on_estimate receives each row's estimate as it is scored.
    """
    import torch

    options = _suite(suite)
    settings = _resolve(setting)
    methods = list(methods or options.methods)
    _check_choices(methods, METHODS, "method")
    torch.set_num_threads(1)  # deterministic and fastest for these small models (METHOD 3b)
    sim = simulate(settings, seed=seed, n=_subjects(settings, options, n))
    name = settings.name
    reference = metrics.all_allowed_cross_edges_reference(sim.adjacency).f1
    rows: list[dict] = []
    for i, method in enumerate(methods):
        if progress is not None:
            progress({"setting": name, "seed": seed, "method": method, "done": i, "total": len(methods)})
        torch.manual_seed(seed)
        if method == "mmcrl":
            inner = None if progress is None else (
                lambda event, m=method: progress({"setting": name, "seed": seed, "method": m, "fit": event}))
            new = _run_mmcrl(sim, seed, options, inner)
        else:
            new = _run_baseline(method, sim, seed)
        for row, latents, graph in new:
            row.update(setting=name, seed=seed, cross_f1_all_edges_ref=reference, n=sim.settings.n,
                       latents=sim.latents.shape[1], sparsity_condition=sim.sparsity_condition)
            if on_estimate is not None:
                on_estimate(ScoredEstimate(name, seed, str(row["method"]), latents, graph, sim, dict(row)))
            rows.append(row)
    if progress is not None:
        progress({"setting": name, "seed": seed, "method": None, "done": len(methods), "total": len(methods)})
    frame = pd.DataFrame(rows)
    for column in RESULT_COLUMNS + EXTRA_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    return frame[RESULT_COLUMNS + EXTRA_COLUMNS]


def _suite(name: str) -> SuiteOptions:
    _check_choices([name], list(SUITES), "suite")
    return SUITES[name]


def _resolve_all(settings: Sequence[str | SimulationSettings]) -> list[SimulationSettings]:
    resolved = [_resolve(s) for s in settings]
    names = [s.name for s in resolved]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserInputError(f"setting {', '.join(map(repr, twice))} given twice; give each setting once")
    return resolved


def run_benchmark(
    suite: str = "quick",
    seeds: int | None = None,
    out_dir: str | Path | None = None,
    settings: Sequence[str | SimulationSettings] | None = None,
    methods: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    n: int | None = None,
    on_estimate: EstimateFn | None = None,
    save_estimates: bool = False,
) -> pd.DataFrame:
    """Run a suite; with out_dir, write results.csv (after every data set) and results.md.

    save_estimates (needs out_dir) also writes every estimate and the truth under DIR/estimates/.
    """
    options = _suite(suite)
    resolved = _resolve_all(list(settings or options.settings))
    methods = list(methods or options.methods)
    _check_choices(methods, METHODS, "method")
    seeds = options.default_seeds if seeds is None else int(seeds)
    if seeds < 1:
        raise UserInputError("--seeds must be at least 1")
    if n is not None:
        _subjects(resolved[0], options, n)  # a bad n fails now, not after the first data set
    out = Path(out_dir) if out_dir is not None else None
    if save_estimates and out is None:
        raise UserInputError("saving the estimates needs an output folder (--out)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    hooks: list[EstimateFn] = [benchmark_artifacts.EstimateWriter(out)] if save_estimates else []
    if on_estimate is not None:
        hooks.append(on_estimate)

    def each_estimate(estimate: ScoredEstimate) -> None:
        for hook in hooks:
            hook(estimate)

    frames: list[pd.DataFrame] = []
    jobs = [(s, seed) for s in resolved for seed in range(seeds)]
    for done, (setting, seed) in enumerate(jobs):
        inner = None if progress is None else (lambda event, d=done: progress({**event, "job": d, "jobs": len(jobs)}))
        frames.append(run_single_setting(setting, seed, methods, suite, inner, n, each_estimate if hooks else None))
        results = pd.concat(frames, ignore_index=True)
        if out is not None:
            results.to_csv(out / "results.csv", index=False)
    results = pd.concat(frames, ignore_index=True)
    if out is not None:
        (out / "results.md").write_text(results_markdown(results, suite))
    return results


def load_settings_file(path: str | Path) -> list[SimulationSettings]:
    """Simulator settings given by value: a JSON object of SimulationSettings fields, or a list of them.

    A name must be new, or name a setting of simulate.SETTINGS with exactly its values, so a name
    in results.csv always means one data-generating process.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"settings file {path} not found: give a JSON file of simulator settings")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserInputError(f"settings file {path} is not valid JSON: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise UserInputError(f"settings file {path}: expected a JSON object of simulator settings "
                             "(name, modalities, latents, nuisance, obs_dim, n, ...) or a list of them")
    settings = []
    for i, item in enumerate(items):
        where = f"settings file {path}" + (f", entry {i + 1}" if isinstance(data, list) else "")
        try:
            value = SimulationSettings.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
            raise UserInputError(f"{where}: {problems}") from exc
        if value.name in SETTINGS and SETTINGS[value.name] != value:
            raise UserInputError(f"{where}: name {value.name!r} is a named setting with other values; "
                                 "give your setting a new name")
        if not SETTING_NAME.match(value.name):
            raise UserInputError(f"{where}: setting name {value.name!r}: start with a letter, then letters, "
                                 "digits, '_', '-', '.' or '+' (at most 41 characters)")
        try:
            value.sizes()
        except UserInputError as exc:
            raise UserInputError(f"{where}: {exc}") from exc
        settings.append(value)
    return settings


# ----------------------------------------------------------------------------- report


def _mean_sd(values: pd.Series, digits: int = 2) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def results_markdown(results: pd.DataFrame, suite: str = "") -> str:
    """Mean ± sd per setting and method, with the paper's reported numbers beside ours."""
    lines = [f"# mmcrl benchmark{f' ({suite} suite)' if suite else ''}", "",
             "Mean ± sd over data seeds. mcc: within-modality matched |Pearson| (the method's promise); "
             "mcc_min: worst modality; r2: kernel ridge, estimated -> true latents per modality; "
             "shd (all latent pairs) / shd_cross (cross-modal pairs, as the paper's SHD) / cross_f1: the method's own graph (mmcrl: learned adjacency; baselines: Lasso read-out); "
             f"pc_f1: PC (Fisher-z, alpha {BENCHMARK_PC_ALPHA:g}, modality tiers) on the latents; "
             "all_edges_f1: predicting every allowed cross-modal edge. "
             "mmcrl is the lowest-validation-loss training seed; mmcrl#i are the individual seeds. "
             "seconds: fitting time (mmcrl: all training seeds together), scoring excluded.",
             f"Paper numbers: {SOURCE}. Our random graphs and mixings differ from the paper's.", ""]
    metrics_shown = [("mcc", 2), ("mcc_spearman", 2), ("mcc_min_modality", 2), ("r2", 2), ("shd", 1),
                     ("shd_cross", 1), ("cross_f1", 2), ("cross_f1_pc", 2), ("cross_f1_all_edges_ref", 2), ("seconds", 0)]
    headers = ["method", "mcc", "mcc_spearman", "mcc_min", "r2", "shd", "shd_cross", "cross_f1", "pc_f1", "all_edges_f1",
               "seconds"]
    for setting, group in results.groupby("setting", sort=False):
        paper = PAPER_RESULTS.get(setting)
        lines += [f"## {setting}", ""]
        if paper is not None:
            reported = ", ".join(f"{k} {v}" for k, v in (("MCC", paper.mcc), ("R^2", paper.r2), ("SHD", paper.shd))
                                 if v is not None)
            lines += [f"Paper: {reported + '; ' if reported else ''}{paper.note}", ""]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for method, rows in group.groupby("method", sort=False):
            cells = [str(method)] + [_mean_sd(rows[col], digits) if col in rows else ""
                                     for col, digits in metrics_shown]
            lines.append("| " + " | ".join(cells) + " |")
        if paper is not None and (paper.mcc is not None or paper.r2 is not None or paper.shd is not None):
            cells = ["paper (mmcrl)", "" if paper.mcc is None else f"{paper.mcc:.2f}", "", "",
                     "" if paper.r2 is None else f"{paper.r2:.2f}", "",
                     "" if paper.shd is None else str(paper.shd), "", "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="score mmcrl and baselines on simulated data with known truth",
        description="Run a benchmark suite and write DIR/results.csv and DIR/results.md. "
        f"Suites: quick ({', '.join(SUITES['quick'].settings)}, n=10,000, mmcrl best of 3 seeds; minutes) and paper (every "
        "numerical experiment of the paper; hours).",
    )
    p.add_argument("--suite", default="quick", help="quick or paper (default quick)")
    p.add_argument("--setting", nargs="+", action="extend", metavar="NAME",
                   help=f"only these settings ({', '.join(SETTINGS)})")
    p.add_argument("--settings-file", metavar="FILE",
                   help="JSON of simulator settings (a SimulationSettings object or a list of them) to run "
                   "under their own names, after any --setting")
    p.add_argument("--n", type=int, metavar="N",
                   help="subjects to simulate for every setting (default: the suite's; quick: 10,000, tiny 1,000)")
    p.add_argument("--seeds", type=int, help="data seeds per setting (default: the suite's)")
    p.add_argument("--methods", nargs="+", action="extend", metavar="METHOD",
                   help=f"only these methods ({', '.join(METHODS)})")
    p.add_argument("--save-estimates", action="store_true",
                   help="also write each method's latents and graph and the truth to "
                   "DIR/estimates/<setting>/<seed>/ (the app's benchmark page draws them)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace, on_estimate: EstimateFn | None = None) -> int:
    """The `benchmark` command on parsed arguments; on_estimate sees every scored estimate.

    The app's benchmark jobs call this with the arguments they show, so their numbers are the CLI's.
    """
    from tqdm import tqdm

    options = _suite(args.suite)
    settings: list[str | SimulationSettings] = list(args.setting or [])
    if args.settings_file:
        settings += load_settings_file(args.settings_file)
    settings = settings or list(options.settings)
    methods = args.methods or list(options.methods)
    resolved = _resolve_all(settings)
    _check_choices(methods, METHODS, "method")
    seeds = options.default_seeds if args.seeds is None else args.seeds
    bar = tqdm(total=len(resolved) * max(seeds, 1) * len(methods), unit="method", dynamic_ncols=True)

    def progress(event: dict) -> None:
        # run_single_setting announces each method as it starts (done = methods finished so far)
        if "fit" in event:
            bar.set_postfix_str(f"mmcrl seed {event['fit'].get('seed')} epoch {event['fit'].get('epoch')}")
            return
        if event["done"] > 0:
            bar.update(1)
        bar.set_description(f"{event['setting']} seed {event['seed']}")
        if event["method"] is not None:
            bar.set_postfix_str(str(event["method"]))

    results = run_benchmark(args.suite, seeds, args.out, resolved, methods, progress, n=args.n,
                            on_estimate=on_estimate, save_estimates=args.save_estimates)
    bar.close()
    summary = results[~results["method"].str.contains("#")].groupby(["setting", "method"], sort=False)
    print(summary[["mcc", "r2", "cross_f1"]].mean().round(3).to_string())
    written = f"{Path(args.out) / 'results.csv'} and {Path(args.out) / 'results.md'}"
    if args.save_estimates:
        written += f", estimates in {Path(args.out) / benchmark_artifacts.ESTIMATES}"
    print(f"wrote {written}")
    return 0
