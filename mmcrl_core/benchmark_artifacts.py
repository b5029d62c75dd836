"""What the benchmark page shows beyond results.csv: per-method latents and graphs, aligned to the truth.

`python -m mmcrl_core benchmark ... --out DIR --save-estimates` (benchmark.run_benchmark with
save_estimates) writes, beside results.csv, every scored estimate and the truth it was scored against:

  DIR/estimates/<setting>/<seed>/truth/latents.csv     subject id, then one column per true latent
  DIR/estimates/<setting>/<seed>/truth/adjacency.csv   index = parent, columns = child (0/1)
  DIR/estimates/<setting>/<seed>/<method>/latents.csv  the method's latents (same "<modality>:<k>" names)
  DIR/estimates/<setting>/<seed>/<method>/adjacency.csv  the graph behind its shd / cross_f1, in its
                                                       own latent names (learned, or the Lasso read-out)

<method> is the results.csv method ("mmcrl", "mmcrl#2" as "mmcrl_2", ...), so the page reads the very
estimate behind each row and never re-trains anything. Matching is recomputed on load with the
function the scores use (metrics.mcc_by_modality), so matched names on the page are those behind
the SHD and F1 in results.csv.

Everything else here turns those tables into what the page draws: edge status (correct / missed /
spurious / reversed), node positions (one circle per modality) and scatter data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .metrics import align_adjacency, mcc_by_modality, modality_of

if TYPE_CHECKING:
    from .benchmark import ScoredEstimate

ESTIMATES = "estimates"
TRUTH = "truth"
LATENTS = "latents.csv"
ADJACENCY = "adjacency.csv"
MAX_ROWS = 5000  # subjects kept per table: plenty for scatter plots and matching, bounded on disk

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def _safe(name: str) -> str:
    """A setting or method name as a folder name (no separators, no leading dot)."""
    cleaned = _SAFE.sub("_", str(name)).lstrip(".")
    return cleaned or "_"


def seed_dir(out_dir: Path | str, setting: str, seed: int) -> Path:
    return Path(out_dir) / ESTIMATES / _safe(setting) / str(int(seed))


def truth_dir(out_dir: Path | str, setting: str, seed: int) -> Path:
    return seed_dir(out_dir, setting, seed) / TRUTH


def method_dir(out_dir: Path | str, setting: str, seed: int, method: str) -> Path:
    if _safe(method) == TRUTH:
        raise ValueError(f"{method!r} cannot be a method name: the truth is saved under it")
    return seed_dir(out_dir, setting, seed) / _safe(method)


# ----------------------------------------------------------------------------- writing


def save_truth(out_dir: Path | str, setting: str, seed: int, latents: pd.DataFrame,
               adjacency: pd.DataFrame, max_rows: int | None = MAX_ROWS) -> Path:
    """The simulator's true latents (first max_rows subjects: enough for plots) and graph."""
    folder = truth_dir(out_dir, setting, seed)
    _write_pair(folder, latents, adjacency, max_rows)
    return folder


def save_method(out_dir: Path | str, setting: str, seed: int, method: str, latents: pd.DataFrame,
                adjacency: pd.DataFrame | None = None, max_rows: int | None = MAX_ROWS) -> Path:
    """One method's estimated latents (same rows as the truth) and its graph, if it has one."""
    folder = method_dir(out_dir, setting, seed, method)
    _write_pair(folder, latents, adjacency, max_rows)
    return folder


def _write_pair(folder: Path, latents: pd.DataFrame, adjacency: pd.DataFrame | None, max_rows: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _head(latents, max_rows).to_csv(folder / LATENTS, float_format="%.6g")
    if adjacency is not None:
        adjacency.to_csv(folder / ADJACENCY)
    else:
        (folder / ADJACENCY).unlink(missing_ok=True)  # a rerun without a graph leaves none behind


def _head(frame: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    return frame if max_rows is None else frame.iloc[:max_rows]


class EstimateWriter:
    """benchmark's on_estimate hook that writes each estimate, and once per data set the truth."""

    def __init__(self, out_dir: Path | str, max_rows: int | None = MAX_ROWS):
        self.out_dir = Path(out_dir)
        self.max_rows = max_rows
        self._truth_saved: set[tuple[str, int]] = set()

    def __call__(self, estimate: ScoredEstimate) -> None:
        key = (estimate.setting, estimate.seed)
        if key not in self._truth_saved:
            save_truth(self.out_dir, *key, estimate.truth.latents, estimate.truth.adjacency, self.max_rows)
            self._truth_saved.add(key)
        save_method(self.out_dir, *key, estimate.method, estimate.latents, estimate.adjacency, self.max_rows)


# ----------------------------------------------------------------------------- reading


@dataclass
class Truth:
    latents: pd.DataFrame
    adjacency: pd.DataFrame


@dataclass
class MethodArtifacts:
    method: str
    latents: pd.DataFrame
    adjacency: pd.DataFrame | None  # in the method's own latent names


def _read_indexed(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, index_col=0)


def available(out_dir: Path | str) -> pd.DataFrame:
    """Every saved (setting, seed, method) with its truth: columns setting, seed, method (folder names)."""
    root = Path(out_dir) / ESTIMATES
    rows = []
    if root.is_dir():
        for setting_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for sdir in sorted((p for p in setting_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                               key=lambda p: int(p.name)):
                if not (sdir / TRUTH / LATENTS).is_file():
                    continue
                for mdir in sorted(p for p in sdir.iterdir()
                                   if p.is_dir() and p.name != TRUTH and (p / LATENTS).is_file()):
                    rows.append({"setting": setting_dir.name, "seed": int(sdir.name), "method": mdir.name})
    return pd.DataFrame(rows, columns=["setting", "seed", "method"])


def load_truth(out_dir: Path | str, setting: str, seed: int) -> Truth | None:
    folder = truth_dir(out_dir, setting, seed)
    if not (folder / LATENTS).is_file() or not (folder / ADJACENCY).is_file():
        return None
    return Truth(_read_indexed(folder / LATENTS), _read_indexed(folder / ADJACENCY))


def load_method(out_dir: Path | str, setting: str, seed: int, method: str) -> MethodArtifacts | None:
    folder = method_dir(out_dir, setting, seed, method)
    if not (folder / LATENTS).is_file():
        return None
    adjacency = _read_indexed(folder / ADJACENCY) if (folder / ADJACENCY).is_file() else None
    return MethodArtifacts(method, _read_indexed(folder / LATENTS), adjacency)


# ----------------------------------------------------------------------------- comparing


@dataclass
class Comparison:
    """A method's output aligned to the truth, ready to draw."""

    matching: dict[str, str]  # true latent -> estimated latent (inside its modality)
    matched_corr: dict[str, float]  # true latent -> |Pearson r| with its match
    edges: pd.DataFrame | None  # source, target (true names), status, cross_modal, weight


EDGE_STATUSES = ("correct", "missed", "spurious", "reversed")


def compare(truth: Truth, method: MethodArtifacts) -> Comparison:
    """Match latents inside each modality (as the scores do), then classify every edge."""
    common = truth.latents.index.intersection(method.latents.index)
    true_latents = truth.latents.loc[common]
    estimated = method.latents.loc[common]
    block = mcc_by_modality(true_latents, estimated)
    corr = {}
    for t_name, e_name in block.matching.items():
        pair = pd.concat([true_latents[t_name], estimated[e_name]], axis=1).dropna()
        r = np.corrcoef(pair.iloc[:, 0], pair.iloc[:, 1])[0, 1] if len(pair) > 2 else float("nan")
        corr[t_name] = float(abs(r)) if np.isfinite(r) else 0.0
    edges = None
    if method.adjacency is not None:
        names = list(truth.adjacency.columns)
        aligned = align_adjacency(method.adjacency, block.matching, names)
        edges = edge_status(truth.adjacency, aligned)
    return Comparison(block.matching, corr, edges)


def edge_status(true_adjacency: pd.DataFrame, learned_adjacency: pd.DataFrame) -> pd.DataFrame:
    """Every edge of either graph (both in the true latent names) with its status.

    correct: in both, same direction; reversed: learned j->i for a true i->j (listed once, in the
    learned direction); missed: true edge absent from the learned graph; spurious: learned edge
    absent from the truth in either direction.
    """
    names = list(true_adjacency.columns)
    truth = true_adjacency.loc[names, names].to_numpy(dtype=float) != 0
    learned_values = learned_adjacency.loc[names, names].to_numpy(dtype=float)
    learned = learned_values != 0
    rows = []
    for i, source in enumerate(names):
        for j, target in enumerate(names):
            if i == j:
                continue
            status = None
            if truth[i, j] and learned[i, j]:
                status = "correct"
            elif learned[i, j] and truth[j, i] and not truth[i, j]:
                status = "reversed"
            elif truth[i, j] and not learned[i, j] and not learned[j, i]:
                status = "missed"
            elif truth[i, j] and learned[j, i]:
                continue  # shown once, as the reversed learned edge
            elif learned[i, j]:
                status = "spurious"
            if status is not None:
                rows.append({
                    "source": source, "target": target, "status": status,
                    "cross_modal": modality_of(source) != modality_of(target),
                    "weight": float(learned_values[i, j]),
                })
    return pd.DataFrame(rows, columns=["source", "target", "status", "cross_modal", "weight"])


def estimated_label(true_name: str, matching: dict[str, str]) -> str:
    """How a true node is labelled on the learned graph: its matched estimate's name."""
    return matching.get(true_name, "unmatched")


def circle_layout(names: list[str], ring: float = 3.0, radius: float = 1.0) -> dict[str, tuple[float, float]]:
    """One small circle of nodes per modality; the modalities sit on a larger circle, the first on the left.

    Positions depend only on the names, so the true and the learned graph line up node for node.
    Each small circle starts across the ring's tangent, so two latents of a modality never line up
    with the other modalities (their edges would overlap).
    """
    modalities = list(dict.fromkeys(modality_of(n) for n in names))
    positions: dict[str, tuple[float, float]] = {}
    for b, modality in enumerate(modalities):
        angle = math.pi - 2 * math.pi * b / len(modalities)
        cx, cy = (ring * math.cos(angle), ring * math.sin(angle)) if len(modalities) > 1 else (0.0, 0.0)
        members = [n for n in names if modality_of(n) == modality]
        for k, name in enumerate(members):
            if len(members) == 1:
                positions[name] = (cx, cy)
                continue
            theta = angle + math.pi / 2 + 2 * math.pi * k / len(members)
            positions[name] = (round(cx + radius * math.cos(theta), 9), round(cy + radius * math.sin(theta), 9))
    return positions


def scatter_frame(truth: Truth, method: MethodArtifacts, matching: dict[str, str], max_points: int = 1500,
                  seed: int = 0) -> pd.DataFrame:
    """Long table for scatter plots: true_latent, estimated_latent, true, estimated (a row sample)."""
    common = truth.latents.index.intersection(method.latents.index)
    rng = np.random.default_rng(seed)
    if len(common) > max_points:
        common = common[np.sort(rng.choice(len(common), max_points, replace=False))]
    parts = []
    for t_name in truth.latents.columns:
        e_name = matching.get(t_name)
        if e_name is None or e_name not in method.latents.columns:
            continue
        part = pd.DataFrame({
            "true_latent": t_name,
            "estimated_latent": e_name,
            "true": truth.latents.loc[common, t_name].to_numpy(),
            "estimated": method.latents.loc[common, e_name].to_numpy(),
        }).dropna()
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["true_latent", "estimated_latent", "true", "estimated"])
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- the results table

SCORE_COLUMNS = {  # results.csv column -> heading on the page
    "mcc": "MCC (Pearson)",
    "mcc_spearman": "MCC (Spearman)",
    "r2": "R²",
    "shd": "SHD",
    "cross_f1": "cross-modal F1",
}


def results_table(results: pd.DataFrame, include_training_seeds: bool = False) -> pd.DataFrame:
    """One row per (setting, method): mean scores over data seeds, with the paper's figures beside.

    Means of single seeds are the results.csv values themselves, so the page shows exactly what
    the command line wrote. mmcrl#i rows (each training seed) are left out unless asked for.
    """
    from .paper_results import paper_result

    frame = results.copy()
    frame["method"] = frame["method"].astype(str)
    if not include_training_seeds:
        frame = frame[~frame["method"].str.contains("#")]
    rows = []
    for (setting, method), group in frame.groupby(["setting", "method"], sort=False):
        row = {"setting": setting, "method": method, "seeds": int(group["seed"].nunique())}
        for column, heading in SCORE_COLUMNS.items():
            values = pd.to_numeric(group[column], errors="coerce") if column in group else pd.Series(dtype=float)
            row[heading] = float(values.mean()) if values.notna().any() else np.nan
            if len(values.dropna()) > 1:
                row[f"{heading} sd"] = float(values.std(ddof=1))
        paper = paper_result(str(setting)) if method == "mmcrl" else None
        row["paper MCC"] = paper.mcc if paper is not None else None
        row["paper R²"] = paper.r2 if paper is not None else None
        row["paper SHD"] = paper.shd if paper is not None else None
        row["paper note"] = paper.note if paper is not None else ""
        if "seconds" in group:
            row["seconds"] = float(pd.to_numeric(group["seconds"], errors="coerce").mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    ordered = ["setting", "method", "seeds"]
    for heading in SCORE_COLUMNS.values():
        ordered += [c for c in (heading, f"{heading} sd") if c in table.columns]
    ordered += [c for c in ("paper MCC", "paper R²", "paper SHD", "paper note", "seconds") if c in table.columns]
    if len(table):
        for column in ("paper MCC", "paper R²", "paper SHD"):
            # numbers or blanks: None in an object column would print as the word "None"
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table[ordered] if len(table) else pd.DataFrame(columns=ordered)


def readable_paper_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Paper figures as text with blanks where the paper has none (a grid prints missing numbers as
    'None'); columns the paper leaves empty for every row are dropped so the scores fit."""
    table = table.copy()
    for column, digits in (("paper MCC", 2), ("paper R²", 2), ("paper SHD", 1)):
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().all():
            table = table.drop(columns=column)
        else:
            table[column] = values.map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}".rstrip("0").rstrip("."))
    if "paper note" in table.columns and not table["paper note"].fillna("").astype(str).str.strip().any():
        table = table.drop(columns="paper note")
    return table


def all_edges_reference(results: pd.DataFrame) -> dict[str, float]:
    """Per setting, the cross-modal F1 of predicting every allowed edge: a graph must beat it."""
    if "cross_f1_all_edges_ref" not in results.columns:
        return {}
    means = results.groupby("setting", sort=False)["cross_f1_all_edges_ref"].mean()
    return {str(k): float(v) for k, v in means.items() if pd.notna(v)}
