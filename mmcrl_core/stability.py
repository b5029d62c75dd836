"""How stable a run's latents and edges are across a group of runs (several seeds, or bootstrap
resamples of the same data).

Latents are identified only up to a permutation (and sign / monotone map) inside a modality, so
runs are first aligned to a reference run: within each modality, the Hungarian assignment on
absolute Pearson correlations over the subjects both runs encoded (METHOD 4, as for MCC).
- latent stability: mean matched |r| of the reference latent over the other runs;
- edge support: share of runs (reference included) having the edge, after renaming each run's
  latents to the reference's.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from . import runfolder as rf
from .config import parse_latent_name
from .errors import UserInputError

MIN_COMMON_SUBJECTS = 10


@dataclass
class LatentMatch:
    """How one run's latents map onto the reference run's."""

    run_id: str
    to_reference: dict[str, str]  # this run's latent -> reference latent
    correlation: dict[str, float]  # reference latent -> matched |r| (0 when left unmatched)


@dataclass
class StabilityReport:
    reference_run: str
    run_ids: list[str]
    latent_stability: pd.DataFrame  # latent, modality, stability, min_correlation, n_runs
    edge_support: pd.DataFrame  # source, target, support, n_runs_with_edge, n_runs, mean_weight, cross_modal
    matches: list[LatentMatch] = field(default_factory=list)

    def support_map(self) -> dict[tuple[str, str], float]:
        return {(r.source, r.target): float(r.support) for r in self.edge_support.itertuples(index=False)}

    def stability_map(self) -> dict[str, float]:
        return {
            r.latent: float(r.stability)
            for r in self.latent_stability.itertuples(index=False)
            if not math.isnan(r.stability)
        }


def _by_modality(columns) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in columns:
        groups.setdefault(parse_latent_name(str(name))[0], []).append(str(name))
    return groups


def match_latents(reference: pd.DataFrame, other: pd.DataFrame) -> tuple[dict[str, str], dict[str, float]]:
    """Hungarian matching of `other`'s latents to `reference`'s, inside each modality.

    Both frames are indexed by subject id; only subjects in both count (a bootstrap resample that
    repeats subjects counts each once). Returns (other latent -> reference latent,
    reference latent -> matched |r|).
    """
    reference = reference[~reference.index.duplicated()]
    other = other[~other.index.duplicated()]
    common = reference.index.intersection(other.index)
    if len(common) < MIN_COMMON_SUBJECTS:
        raise UserInputError(
            f"only {len(common)} subjects are in both runs' latents.csv; matching latents needs at least "
            f"{MIN_COMMON_SUBJECTS} (are these runs on the same dataset?)"
        )
    reference, other = reference.loc[common], other.loc[common]
    to_reference: dict[str, str] = {}
    correlation: dict[str, float] = {name: 0.0 for name in reference.columns}
    other_groups = _by_modality(other.columns)
    for modality, ref_names in _by_modality(reference.columns).items():
        other_names = other_groups.get(modality, [])
        if not other_names:
            continue
        block = np.zeros((len(ref_names), len(other_names)))
        for i, a in enumerate(ref_names):
            for j, b in enumerate(other_names):
                pair = pd.concat([reference[a], other[b]], axis=1).dropna().to_numpy(dtype=float)
                if len(pair) >= 3 and pair[:, 0].std() > 0 and pair[:, 1].std() > 0:
                    block[i, j] = abs(float(np.corrcoef(pair[:, 0], pair[:, 1])[0, 1]))
        rows, cols = linear_sum_assignment(block, maximize=True)
        for i, j in zip(rows, cols):
            to_reference[other_names[j]] = ref_names[i]
            correlation[ref_names[i]] = float(block[i, j])
    return to_reference, correlation


def _run_edges(run_dir: Path, threshold: float | None) -> dict[tuple[str, str], float]:
    from .graph import learned_graph

    graph = learned_graph(run_dir, threshold=threshold)
    return {(s, t): float(a["weight"]) for s, t, a in graph.edges(data=True)}


def _reference_index(run_dirs: list[Path], reference: Path | str | int | None) -> int:
    if isinstance(reference, int):
        return reference
    if reference is not None:
        wanted = Path(reference).resolve()
        for i, run_dir in enumerate(run_dirs):
            if run_dir.resolve() == wanted:
                return i
        raise UserInputError(f"reference run {reference} is not one of the runs given")
    # Lowest validation loss: the seed-selection rule of METHOD 3b.
    losses = []
    for run_dir in run_dirs:
        metrics = rf.read_manifest(run_dir).get("metrics") or {}
        loss = metrics.get("best_val_loss", metrics.get("val_loss"))
        losses.append(float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else math.inf)
    return int(np.argmin(losses)) if any(math.isfinite(x) for x in losses) else 0


def run_stability(
    run_dirs: list[Path | str],
    reference: Path | str | int | None = None,
    threshold: float | None = None,
) -> StabilityReport:
    """Latent stability and edge support for a group of runs, in the reference run's latent names.

    reference: a run folder or index; default the run with the lowest validation loss, else the
    first. threshold: None uses each run's own selected edges (adjacency.csv).
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UserInputError("stability needs at least one run")
    ref_index = _reference_index(run_dirs, reference)
    ref_dir = run_dirs[ref_index]
    run_ids = [str(rf.read_manifest(d).get("run_id") or d.name) for d in run_dirs]
    ref_latents = rf.read_latents(ref_dir)
    ref_latents.index = ref_latents.index.astype(str)

    matches: list[LatentMatch] = []
    edge_counts: Counter = Counter()
    edge_weights: dict[tuple[str, str], list[float]] = {}
    for index, run_dir in enumerate(run_dirs):
        if index == ref_index:
            mapping = {name: name for name in ref_latents.columns}
        else:
            other = rf.read_latents(run_dir)
            other.index = other.index.astype(str)
            mapping, correlation = match_latents(ref_latents, other)
            matches.append(LatentMatch(run_ids[index], mapping, correlation))
        seen = set()
        for (source, target), weight in _run_edges(run_dir, threshold).items():
            if source not in mapping or target not in mapping:
                continue  # a latent this run could not match: its edges count as absent
            key = (mapping[source], mapping[target])
            if key in seen or key[0] == key[1]:
                continue
            seen.add(key)
            edge_counts[key] += 1
            edge_weights.setdefault(key, []).append(weight)

    n_runs = len(run_dirs)
    latent_rows = []
    for name in ref_latents.columns:
        values = [m.correlation.get(name, 0.0) for m in matches]
        latent_rows.append(
            {
                "latent": name,
                "modality": parse_latent_name(name)[0],
                "stability": float(np.mean(values)) if values else math.nan,
                "min_correlation": float(np.min(values)) if values else math.nan,
                "n_runs": n_runs,
            }
        )
    edge_rows = [
        {
            "source": source,
            "target": target,
            "support": count / n_runs,
            "n_runs_with_edge": count,
            "n_runs": n_runs,
            "mean_weight": float(np.mean(edge_weights[(source, target)])),
            "cross_modal": parse_latent_name(source)[0] != parse_latent_name(target)[0],
        }
        for (source, target), count in sorted(edge_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return StabilityReport(
        reference_run=run_ids[ref_index],
        run_ids=run_ids,
        latent_stability=pd.DataFrame(latent_rows, columns=["latent", "modality", "stability", "min_correlation", "n_runs"]),
        edge_support=pd.DataFrame(
            edge_rows,
            columns=["source", "target", "support", "n_runs_with_edge", "n_runs", "mean_weight", "cross_modal"],
        ),
        matches=matches,
    )


def group_support_graph(run_dir: Path | str, group_dirs: list[Path | str], threshold: float | None = None):
    """The learned graph of `run_dir` with edge support and latent stability from its group.

    Returns (graph, report); report is None when the group holds only this run."""
    from .graph import learned_graph

    run_dir = Path(run_dir)
    others = [Path(d) for d in group_dirs if Path(d).resolve() != run_dir.resolve()]
    if not others:
        return learned_graph(run_dir, threshold=threshold), None
    report = run_stability([run_dir, *others], reference=0, threshold=threshold)
    graph = learned_graph(run_dir, threshold=threshold, support=report.support_map(),
                          stability=report.stability_map())
    graph.graph["support_runs"] = len(report.run_ids)
    return graph, report
