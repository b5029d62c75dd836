"""Recovery metrics of METHOD.md section 4: MCC, R^2, SHD and cross-modal edge precision / recall / F1.

Latents are identified only up to a permutation inside their modality and an invertible scalar map,
so every score first matches estimated to true latents. The promise is recovery within each
modality: `mcc_by_modality` matches inside modality blocks, and its matching is the one used to
align an estimated graph to the true one before graph scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata


def _as_array(x) -> np.ndarray:
    return np.asarray(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=float)


def abs_correlation(true: np.ndarray, estimated: np.ndarray, method: str = "pearson") -> np.ndarray:
    """|corr(true_i, estimated_j)| as a (k_true x k_est) matrix; constant or missing columns give 0."""
    t, e = _as_array(true), _as_array(estimated)
    keep = ~(np.isnan(t).any(1) | np.isnan(e).any(1))
    t, e = t[keep], e[keep]
    if method == "spearman":
        t, e = rankdata(t, axis=0), rankdata(e, axis=0)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', not {method!r}")
    t = t - t.mean(0)
    e = e - e.mean(0)
    denom = np.outer(np.linalg.norm(t, axis=0), np.linalg.norm(e, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.abs(t.T @ e) / denom
    return np.nan_to_num(corr, nan=0.0)


@dataclass
class MCCResult:
    value: float  # mean of matched absolute correlations
    matching: list[tuple[int, int]]  # (true index, estimated index) pairs
    matched: np.ndarray  # the matched correlations, in true-index order
    corr: np.ndarray = field(repr=False)  # the full |corr| matrix


def mcc(true, estimated, method: str = "pearson") -> MCCResult:
    """Mean correlation coefficient with the Hungarian assignment (maximising total |corr|)."""
    return mcc_from_correlation(abs_correlation(true, estimated, method))


def mcc_from_correlation(corr: np.ndarray) -> MCCResult:
    """Hungarian matching on a (true x estimated) |corr| matrix; unmatched rows simply drop out."""
    corr = np.asarray(corr, dtype=float)
    rows, cols = linear_sum_assignment(-corr)
    matched = corr[rows, cols]
    return MCCResult(float(matched.mean()), list(zip(rows.tolist(), cols.tolist())), matched, corr)


@dataclass
class BlockMCC:
    value: float  # mean over all latents of the within-modality matched |corr|
    per_modality: dict[str, float]
    matching: dict[str, str]  # true latent name -> estimated latent name (inside its modality)
    global_value: float  # Hungarian over all latents ignoring modalities

    @property
    def min_modality(self) -> float:
        return min(self.per_modality.values())


def modality_of(name: str) -> str:
    return name.rpartition(":")[0]


def mcc_by_modality(true: pd.DataFrame, estimated: pd.DataFrame, method: str = "pearson") -> BlockMCC:
    """MCC matched inside each modality block (columns named "<modality>:<k>" in both frames).

    Estimated latents are matched to true latents of the same modality only; the overall value is
    the mean over all true latents, so a modality with more latents weighs more.
    """
    per_modality: dict[str, float] = {}
    matching: dict[str, str] = {}
    matched_all: list[float] = []
    for m in dict.fromkeys(modality_of(c) for c in true.columns):
        t_cols = [c for c in true.columns if modality_of(c) == m]
        e_cols = [c for c in estimated.columns if modality_of(c) == m]
        if not e_cols:
            per_modality[m] = 0.0
            matched_all += [0.0] * len(t_cols)
            continue
        result = mcc(true[t_cols], estimated[e_cols], method)
        # fewer estimated than true latents: unmatched true latents score 0
        matched = np.zeros(len(t_cols))
        for i, j in result.matching:
            matched[i] = result.corr[i, j]
            matching[t_cols[i]] = e_cols[j]
        per_modality[m] = float(matched.mean())
        matched_all += matched.tolist()
    return BlockMCC(
        value=float(np.mean(matched_all)),
        per_modality=per_modality,
        matching=matching,
        global_value=mcc(true, estimated, method).value,
    )


# (ridge alpha, kernel width as a multiple of the input dimension): a small cross around the middle
_KERNEL_RIDGE_GRID = [(1e-3, 1.0), (1e-2, 1.0), (1e-1, 1.0), (1e-2, 0.5), (1e-2, 2.0)]


def kernel_ridge_r2(
    true: pd.DataFrame,
    estimated: pd.DataFrame,
    by_modality: bool = True,
    max_train: int = 1000,
    max_test: int = 1000,
    seed: int = 0,
) -> float:
    """Mean R^2 of an RBF kernel ridge regression from estimated to true latents on held-out rows.

    With by_modality, each true modality block is predicted from the estimated block of the same
    modality (block identification, METHOD.md section 2), else from all estimated latents. Rows are
    subsampled (kernel ridge is cubic in n); alpha and the kernel width are chosen on a validation
    part of the training rows from a small fixed grid.
    """
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score

    t, e = _as_array(true), _as_array(estimated)
    keep = np.flatnonzero(~(np.isnan(t).any(1) | np.isnan(e).any(1)))
    rng = np.random.default_rng(seed)
    keep = rng.permutation(keep)
    n_train = min(max_train, len(keep) // 2)
    train, test = keep[:n_train], keep[n_train:n_train + max_test]
    fit_rows, val_rows = train[: int(0.75 * n_train)], train[int(0.75 * n_train):]
    if by_modality:
        blocks = [
            ([i for i, c in enumerate(true.columns) if modality_of(c) == m],
             [j for j, c in enumerate(estimated.columns) if modality_of(c) == m])
            for m in dict.fromkeys(modality_of(c) for c in true.columns)
        ]
    else:
        blocks = [(list(range(t.shape[1])), list(range(e.shape[1])))]
    scores: list[float] = []
    for t_idx, e_idx in blocks:
        if not e_idx:
            scores += [0.0] * len(t_idx)
            continue
        x = e[:, e_idx]
        x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-12)
        y = t[:, t_idx]
        best, best_score = None, -np.inf
        for alpha, width in _KERNEL_RIDGE_GRID:
            model = KernelRidge(alpha=alpha, kernel="rbf", gamma=1.0 / (width * x.shape[1]))
            model.fit(x[fit_rows], y[fit_rows])
            score = r2_score(y[val_rows], model.predict(x[val_rows]))
            if score > best_score:
                best, best_score = (alpha, width), score
        model = KernelRidge(alpha=best[0], kernel="rbf", gamma=1.0 / (best[1] * x.shape[1]))
        model.fit(x[train], y[train])
        scores += list(r2_score(y[test], model.predict(x[test]), multioutput="raw_values"))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- graphs


def align_adjacency(estimated: pd.DataFrame, matching: dict[str, str], true_names: list[str]) -> pd.DataFrame:
    """Rename an estimated adjacency (index parent, columns child) into true latent names.

    matching maps true name -> estimated name; unmatched true latents get no edges.
    """
    est_to_true = {e: t for t, e in matching.items()}
    out = pd.DataFrame(0.0, index=pd.Index(true_names, name="parent"), columns=true_names)
    values = estimated.to_numpy(dtype=float)
    for i, parent in enumerate(estimated.index):
        for j, child in enumerate(estimated.columns):
            if values[i, j] != 0 and parent in est_to_true and child in est_to_true:
                out.loc[est_to_true[parent], est_to_true[child]] = values[i, j]
    return out


def shd(true_adjacency, estimated_adjacency, cross_modal_only: bool = False) -> int:
    """Structural Hamming distance between directed graphs: each missing, extra or reversed edge is 1.

    Pairs are compared as units: any difference in a pair's (i->j, j->i) pattern costs 1, so a
    reversed edge costs 1, not 2 (and so does an undirected i<->j against a directed one).
    cross_modal_only counts only pairs of latents in different modalities (needs DataFrames).
    """
    a = _as_array(true_adjacency) != 0
    b = _as_array(estimated_adjacency) != 0
    k = a.shape[0]
    iu = np.triu_indices(k, 1)
    differs = (a[iu] != b[iu]) | (a.T[iu] != b.T[iu])
    if cross_modal_only:  # the paper's "cross-modal graph exactly recovered (SHD 0)"
        differs &= cross_modal_mask(list(true_adjacency.columns))[iu]
    return int(differs.sum())


@dataclass
class EdgeScores:
    precision: float
    recall: float
    f1: float
    true_edges: int
    predicted_edges: int


def _scores(true_set: set, predicted_set: set) -> EdgeScores:
    tp = len(true_set & predicted_set)
    precision = tp / len(predicted_set) if predicted_set else (1.0 if not true_set else 0.0)
    recall = tp / len(true_set) if true_set else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EdgeScores(precision, recall, f1, len(true_set), len(predicted_set))


def cross_modal_mask(names: list[str]) -> np.ndarray:
    groups = np.array([modality_of(n) for n in names])
    return groups[:, None] != groups[None, :]


def edge_scores(true_adjacency: pd.DataFrame, estimated_adjacency: pd.DataFrame,
                cross_modal_only: bool = True, directed: bool = True) -> EdgeScores:
    """Precision / recall / F1 of (cross-modal) edges; both frames in the same (true) latent names.

    skeleton (directed=False): an edge counts as found if the pair is linked in either direction.
    """
    names = list(true_adjacency.columns)
    a = _as_array(true_adjacency) != 0
    b = _as_array(estimated_adjacency.loc[names, names]) != 0
    mask = cross_modal_mask(names) if cross_modal_only else ~np.eye(len(names), dtype=bool)

    def edge_set(adj: np.ndarray) -> set:
        pairs = {(i, j) for i, j in zip(*np.nonzero(adj & mask))}
        return pairs if directed else {tuple(sorted(p)) for p in pairs}

    return _scores(edge_set(a), edge_set(b))


def all_allowed_cross_edges(names: list[str], order: list[str] | None = None) -> pd.DataFrame:
    """The trivial prediction: every cross-modal edge the modality order allows (earlier -> later)."""
    order = order or list(dict.fromkeys(modality_of(n) for n in names))
    rank = np.array([order.index(modality_of(n)) for n in names])
    return pd.DataFrame((rank[:, None] < rank[None, :]).astype(int),
                        index=pd.Index(names, name="parent"), columns=names)


def all_allowed_cross_edges_reference(true_adjacency: pd.DataFrame, order: list[str] | None = None) -> EdgeScores:
    """Scores of predicting every allowed cross-modal edge: a read-out must beat this to mean anything."""
    names = list(true_adjacency.columns)
    return edge_scores(true_adjacency, all_allowed_cross_edges(names, order))


@dataclass
class GraphScores:
    shd: int
    shd_cross: int
    cross: EdgeScores
    cross_skeleton: EdgeScores


def graph_scores(true_adjacency: pd.DataFrame, estimated_adjacency: pd.DataFrame,
                 matching: dict[str, str]) -> GraphScores:
    """Align the estimate by the within-modality MCC matching, then SHD and cross-modal scores."""
    names = list(true_adjacency.columns)
    aligned = align_adjacency(estimated_adjacency, matching, names)
    return GraphScores(
        shd=shd(true_adjacency, aligned),
        shd_cross=shd(true_adjacency, aligned, cross_modal_only=True),
        cross=edge_scores(true_adjacency, aligned, directed=True),
        cross_skeleton=edge_scores(true_adjacency, aligned, directed=False),
    )
