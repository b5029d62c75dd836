"""Latent <-> phenotype associations: Spearman and Pearson correlations, p-values, BH q-values.

Everything is computed for all pairs at once with matrix products, so 100 latents x 2,000
phenotypes x 100,000 subjects take seconds, not hours (see benchmarks/associations_speed.py).

Statistics, and the choices behind them:
- Pearson r with pairwise deletion: each latent-phenotype pair uses the subjects observed in both
  (its own n). Sums over those subjects come from masked products X^T Y, X^T M_y, M_x^T M_y, ...
  A fully observed block takes a faster path: one product of standardised columns.
- Spearman rho = Pearson r of average ranks (ties share the mean rank). Ranks are taken per
  variable over all its observed subjects; with pairwise-missing data this differs slightly from
  re-ranking every pair's complete cases (exact when nothing is missing), a price we pay to stay
  vectorised.
- Binary phenotypes (two distinct values, e.g. coded 0/1): Pearson r is then the point-biserial
  correlation and its t test is exactly the two-sample t test with pooled variance; Spearman rho
  is the point-biserial correlation of the latent's ranks (a Mann-Whitney-type effect). Both are
  sensible effect sizes for a two-group difference, so no special casing is needed; the table's
  `kind` column says which phenotypes are binary. Their ranks need no sort (each group's mean rank).
- Adjustment for covariates (partial correlation): latents and phenotypes are residualised on
  the covariates with an intercept (for Spearman: ranks residualised on ranked covariates), then
  correlated; each variable is regressed on the subjects where it and every covariate are observed.
  Subjects missing a covariate are dropped, and the test loses one degree of freedom per covariate.
- p-values: two-sided, t = r sqrt(df / (1 - r^2)) with df = n - 2 - n_covariates (for Spearman the
  usual large-sample approximation, as scipy.stats.spearmanr does).
- Precision: cohort-sized inputs (n x phenotypes > 2e7) are processed in float32, twice as fast
  and half the memory; the error in r (~1e-6) is far below its sampling error 1/sqrt(n). Ranks are
  then taken of the float32 values, so values equal in float32 count as ties.
- q-values: Benjamini-Hochberg over every test in the table (all latents x all phenotypes), one
  family per statistic.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

# Columns of the association table; the first seven are the CLI contract of DESIGN.md.
RESULT_COLUMNS = [
    "latent", "phenotype", "n", "rho", "p", "q", "pearson_r", "pearson_p", "pearson_q", "source", "kind",
]

# Phenotype columns processed per block. Small blocks keep each working array under glibc's mmap
# threshold, so its memory is reused instead of page-faulted in afresh (which cost more than the
# arithmetic at cohort scale); BLAS is still efficient at 100 x n x 32.
DEFAULT_BLOCK = 32
RANK_CHUNK = 32


@dataclass(frozen=True)
class CorrelationResult:
    """Correlation matrices latents x phenotypes (rows follow x's columns, columns follow y's)."""

    r: np.ndarray
    n: np.ndarray
    p: np.ndarray


def average_ranks(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Average ranks along `axis` (1-based, ties share their mean rank); NaN stays NaN.

    Vectorised over variables: two-valued variables get their groups' mean ranks without sorting;
    float32 variables are sorted as packed integer keys (see _packed_ranks), others by argsort.
    NaNs sort last, so observed values rank 1..n_observed.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.ndim == 1:
        return average_ranks(values[None, :], axis=1)[0]
    rows_are_variables = np.ascontiguousarray(np.moveaxis(values, axis, -1))
    ranks = _ranks_along_rows(rows_are_variables)
    return np.moveaxis(ranks, -1, axis)


def _ranks_along_rows(values: np.ndarray) -> np.ndarray:
    n_vars, n_obs = values.shape
    if n_obs == 0:
        return np.empty_like(values)
    two_valued = binary_columns(values.T)
    if two_valued.any():
        # two-valued variables (cases / controls, sex...) need no sort: each group's mean rank
        ranks = np.empty_like(values)
        ranks[two_valued] = _binary_ranks(values[two_valued])
        if (~two_valued).any():
            ranks[~two_valued] = _sorted_ranks(values[~two_valued])
        return ranks
    return _sorted_ranks(values)


def _binary_ranks(values: np.ndarray) -> np.ndarray:
    low = np.nanmin(values, axis=1, keepdims=True)
    is_low = values == low
    n_low = is_low.sum(axis=1, keepdims=True)
    n_high = (~np.isnan(values)).sum(axis=1, keepdims=True) - n_low
    ranks = np.where(is_low, (n_low + 1) / 2.0, n_low + (n_high + 1) / 2.0).astype(values.dtype)
    ranks[np.isnan(values)] = np.nan
    return ranks


def _sorted_ranks(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float32:
        return np.concatenate([_packed_ranks(values[i : i + RANK_CHUNK]) for i in range(0, len(values), RANK_CHUNK)])
    return _argsort_ranks(values)


def _packed_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of float32 rows with one integer sort instead of argsort + gathers.

    Each value becomes an order-preserving 32-bit key (sign bit flipped for positives, all bits for
    negatives) placed above its 32-bit column position in one uint64, so a single sort yields both
    the sorted values and the permutation. Ordinal ranks are then corrected on the runs of equal
    keys only (ties are usually few), each run getting its mean rank.
    """
    n_vars, n_obs = values.shape
    clean = values + np.float32(0.0)  # -0.0 becomes +0.0: equal values, equal keys
    missing = np.isnan(clean)
    clean[missing] = np.nan  # one NaN pattern, sorting after +inf
    bits = clean.view(np.uint32)
    packed = np.empty((n_vars, n_obs), dtype=np.uint64)
    halves = packed.view(np.uint32).reshape(n_vars, n_obs, 2)  # little-endian: [position, key]
    if np.little_endian:
        low, high = halves[..., 0], halves[..., 1]
    else:  # pragma: no cover - big-endian machines
        low, high = halves[..., 1], halves[..., 0]
    low[:] = np.arange(n_obs, dtype=np.uint32)
    np.bitwise_xor(bits, (bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000), out=high)
    packed.sort(axis=1)
    sorted_ranks = np.broadcast_to(np.arange(1, n_obs + 1, dtype=np.float32), (n_vars, n_obs)).copy()
    continues = np.flatnonzero((high[:, 1:] == high[:, :-1]).ravel())  # i+1 ties with i (row-local)
    if continues.size:
        row, column = np.divmod(continues, n_obs - 1)
        tied = row * n_obs + column + 1  # flat index of each element that equals its predecessor
        new_run = np.ones(tied.size, dtype=bool)
        new_run[1:] = tied[1:] != tied[:-1] + 1
        run_id = np.cumsum(new_run) - 1
        head = tied[new_run] - 1  # first element of each run of ties
        length = np.bincount(run_id) + 1
        mean_rank = ((head % n_obs) + (length + 1) / 2.0).astype(np.float32)
        flat = sorted_ranks.reshape(-1)
        flat[head] = mean_rank
        flat[tied] = mean_rank[run_id]
    ranks = np.empty_like(clean)
    np.put_along_axis(ranks, low.astype(np.intp), sorted_ranks, axis=1)
    ranks[missing] = np.nan
    return ranks


def _argsort_ranks(values: np.ndarray) -> np.ndarray:
    n_vars, n_obs = values.shape
    ranks = np.empty_like(values)
    order = np.argsort(values, axis=1)
    sorted_values = np.take_along_axis(values, order, axis=1)
    ordinal = np.arange(1, n_obs + 1, dtype=values.dtype)
    np.put_along_axis(ranks, order, ordinal[None, :], axis=1)
    tied = np.flatnonzero((sorted_values[:, 1:] == sorted_values[:, :-1]).any(axis=1))
    if tied.size:
        run_values = sorted_values[tied]
        # a new run of ties starts where the sorted value changes (NaN != NaN: NaNs never tie)
        starts = np.ones(run_values.shape, dtype=bool)
        starts[:, 1:] = run_values[:, 1:] != run_values[:, :-1]
        ends = np.ones(run_values.shape, dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        positions = np.arange(n_obs, dtype=np.int32)[None, :]
        first = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, positions, n_obs)[:, ::-1], axis=1)[:, ::-1]
        tied_ranks = np.empty(run_values.shape, dtype=values.dtype)
        np.put_along_axis(tied_ranks, order[tied], ((first + last) / 2.0 + 1.0).astype(values.dtype), axis=1)
        ranks[tied] = tied_ranks
    ranks[np.isnan(values)] = np.nan
    return ranks


def residualise(values: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Residuals of each column of `values` after least squares on [1, covariates].

    Each column is fitted on its own observed rows (covariates must be complete there), all
    columns at once: one small (c+1) x (c+1) normal-equation system per column, solved in a batch.
    """
    values = np.asarray(values, dtype=np.float64)
    design = np.column_stack([np.ones(len(covariates)), np.asarray(covariates, dtype=np.float64)])
    # centre and scale the covariates so the normal equations stay well conditioned
    scale = design[:, 1:].std(axis=0)
    scale[scale == 0] = 1.0
    design[:, 1:] = (design[:, 1:] - design[:, 1:].mean(axis=0)) / scale
    observed = ~np.isnan(values)
    filled = np.where(observed, values, 0.0)
    if observed.all():
        coef, *_ = np.linalg.lstsq(design, filled, rcond=None)
        return filled - design @ coef
    weights = observed.astype(np.float64)
    gram = np.einsum("nc,nj,nd->jcd", design, weights, design)  # per column: D^T diag(m_j) D
    rhs = design.T @ filled  # (c+1, columns)
    gram += 1e-10 * np.eye(design.shape[1])[None]  # columns with too few rows stay solvable
    coef = np.linalg.solve(gram, rhs.T[:, :, None])[:, :, 0].T
    residuals = filled - design @ coef
    residuals[~observed] = np.nan
    return residuals


def _standardise_rows(block: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Rows centred on their observed mean and scaled to unit observed norm (NaN kept).

    Correlations do not change, and the pairwise sums below then stay small and cancel little.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if observed.all():
            centred = block - block.mean(axis=1, keepdims=True)
            norm = np.sqrt(np.einsum("ij,ij->i", centred, centred))[:, None]  # no squared temporary
        else:
            filled = np.where(observed, block, 0)
            mean = filled.sum(axis=1, keepdims=True) / observed.sum(axis=1, keepdims=True)
            centred = np.where(observed, block - mean, 0)
            norm = np.sqrt((centred * centred).sum(axis=1, keepdims=True))
            centred[~observed] = np.nan
        norm[norm == 0] = np.nan  # constant variable: correlation undefined
        centred /= norm
        return centred


@dataclass(frozen=True)
class _Side:
    """One side of the product, standardised once: rows = variables, NaN = missing."""

    standardised: np.ndarray  # missing cells are 0 here
    observed: np.ndarray  # float 0/1 mask in the product dtype, or None when nothing is missing
    squared: np.ndarray | None  # standardised**2 (only needed when the other side has holes)
    empty: np.ndarray  # variables with no usable value (all missing or constant)

    @property
    def complete(self) -> bool:
        return self.observed is None


def _side(rows: np.ndarray, dtype, need_squares: bool = True) -> _Side:
    observed = ~np.isnan(rows)
    standardised = _standardise_rows(rows, observed)
    empty = np.isnan(standardised).all(axis=1)
    complete = bool(observed.all()) and not empty.any()
    standardised = np.nan_to_num(standardised, nan=0.0, copy=False).astype(dtype, copy=False)
    return _Side(
        standardised=standardised,
        observed=None if complete else observed.astype(dtype),
        squared=standardised * standardised if need_squares else None,
        empty=empty,
    )


def _pearson_rows(x: np.ndarray | _Side, y: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and pairwise n of every row of x with every row of y (rows = variables).

    x may be prepared once with `_side` and reused for every block of y.
    """
    xs = x if isinstance(x, _Side) else _side(x, dtype)
    ys = _side(y, dtype, need_squares=not xs.complete)
    n_obs = xs.standardised.shape[1]
    sum_xy = xs.standardised @ ys.standardised.T
    if xs.complete and ys.complete:
        # fast path: one BLAS product of unit-norm centred rows
        r = sum_xy
        count = np.full(r.shape, n_obs, dtype=np.int64)
    else:
        # pairwise deletion: sums over the subjects observed in both, from masked products
        shape = sum_xy.shape
        if xs.complete:  # the usual case: latents observed, phenotypes with holes
            count = np.broadcast_to(ys.observed.sum(axis=1)[None, :], shape)
            sum_x = xs.standardised @ ys.observed.T
            sum_xx = xs.squared @ ys.observed.T
            sum_y = np.broadcast_to(ys.standardised.sum(axis=1)[None, :], shape)
            sum_yy = np.broadcast_to(np.einsum("ij,ij->i", ys.standardised, ys.standardised)[None, :], shape)
        else:
            y_observed = ys.observed if ys.observed is not None else np.ones_like(ys.standardised)
            count = xs.observed @ y_observed.T
            sum_x = xs.standardised @ y_observed.T
            sum_xx = xs.squared @ y_observed.T
            sum_y = xs.observed @ ys.standardised.T
            sum_yy = xs.observed @ ys.squared.T
        count = np.asarray(count, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = sum_xy - sum_x * sum_y / count
            var_x = sum_xx - sum_x * sum_x / count
            var_y = sum_yy - sum_y * sum_y / count
            r = cov / np.sqrt(var_x * var_y)
            # zero variance up to rounding: the variable is constant on these subjects
            tiny = 1e-10 if dtype == np.float64 else 1e-5
            degenerate = (var_x <= tiny * sum_xx) | (var_y <= tiny * sum_yy) | (count < 3)
        r = np.where(degenerate, np.nan, r)
        count = np.rint(count).astype(np.int64)
    r = np.where(xs.empty[:, None] | ys.empty[None, :], np.nan, np.clip(r, -1.0, 1.0))
    return r.astype(np.float64), count


def correlation_pvalues(r: np.ndarray, n: np.ndarray, n_covariates: int = 0) -> np.ndarray:
    """Two-sided p-values of correlations from the t distribution with n - 2 - n_covariates df."""
    df = np.asarray(n, dtype=np.float64) - 2.0 - n_covariates
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.minimum(r * r, 1.0)
        # P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2) and df/(df+t^2) = 1 - r^2: exact even at |r| = 1
        p = special.betainc(df / 2.0, 0.5, 1.0 - r2)
    p[(df < 1) | np.isnan(r)] = np.nan
    return p


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH q-values over all finite p (any shape); NaN p stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    finite = np.flatnonzero(~np.isnan(flat))
    q = np.full_like(flat, np.nan)
    if finite.size:
        order = finite[np.argsort(flat[finite], kind="stable")]
        m = order.size
        scaled = flat[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q.reshape(p.shape)


def _auto_dtype(n_subjects: int, n_columns: int):
    # float32 halves memory and doubles BLAS speed; its ~1e-6 error in r is far below the sampling
    # error 1/sqrt(n) at the sizes where it is chosen
    return np.float32 if n_subjects * n_columns > 20_000_000 else np.float64


def correlate(
    x: np.ndarray,
    y: np.ndarray,
    method: str = "pearson",
    covariates: np.ndarray | None = None,
    block: int = DEFAULT_BLOCK,
    dtype=None,
    workers: int = 2,
) -> CorrelationResult:
    """Correlations of every column of x with every column of y (rows = subjects, NaN = missing).

    method: "pearson" or "spearman". covariates: optional matrix (rows = subjects) to partial out;
    rows where a covariate is missing must already be NaN in x and y. y is processed in blocks of
    `block` columns on `workers` threads (numpy's sorts and BLAS release the GIL). dtype of the
    products: None picks float64 for small and float32 for cohort-sized inputs.
    """
    return correlate_methods(x, y, (method,), covariates, block, dtype, workers)[method]


def correlate_methods(
    x: np.ndarray,
    y: np.ndarray,
    methods: tuple[str, ...] = ("spearman", "pearson"),
    covariates: np.ndarray | None = None,
    block: int = DEFAULT_BLOCK,
    dtype=None,
    workers: int = 2,
) -> dict[str, CorrelationResult]:
    """`correlate` for several methods at once: each block of y is read, transposed and checked once."""
    unknown = [m for m in methods if m not in ("pearson", "spearman")]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}")
    y = np.asarray(y)
    dtype = dtype or _auto_dtype(y.shape[0], y.shape[1])
    n_covariates = 0 if covariates is None else np.asarray(covariates).shape[1]
    method_covariates: dict[str, np.ndarray | None] = {}
    for method in methods:
        if covariates is None:
            method_covariates[method] = None
            continue
        cov = np.asarray(covariates, dtype=np.float64)
        if method == "spearman":
            cov = average_ranks(cov)
        # rows with a missing covariate are NaN in x and y, so their filler value is never used
        method_covariates[method] = np.nan_to_num(cov, nan=0.0)
    x_raw = np.ascontiguousarray(np.asarray(x).T, dtype=np.float64 if covariates is not None else dtype)
    x_sides = {m: _side(_prepare_rows(x_raw, m, method_covariates[m]), dtype) for m in methods}

    def one_block(start: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        work_dtype = np.float64 if covariates is not None else dtype
        y_raw = np.ascontiguousarray(y[:, start : start + block].T, dtype=work_dtype)
        return {m: _pearson_rows(x_sides[m], _prepare_rows(y_raw, m, method_covariates[m]), dtype) for m in methods}

    starts = list(range(0, y.shape[1], block))
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one_block, starts))
    else:
        results = [one_block(start) for start in starts]
    out = {}
    for method in methods:
        if results:
            r = np.concatenate([res[method][0] for res in results], axis=1)
            n = np.concatenate([res[method][1] for res in results], axis=1)
        else:
            r = np.empty((x_raw.shape[0], 0))
            n = np.empty((x_raw.shape[0], 0), dtype=np.int64)
        out[method] = CorrelationResult(r=r, n=n, p=correlation_pvalues(r, n, n_covariates))
    return out


def _prepare_rows(rows: np.ndarray, method: str, covariates: np.ndarray | None) -> np.ndarray:
    """Variables as rows (not modified), ranked for Spearman and residualised when adjusting."""
    if method == "spearman":
        rows = _ranks_along_rows(rows)
    if covariates is not None:
        rows = np.ascontiguousarray(residualise(rows.T, covariates).T)
    return rows


def association_table(
    latents: pd.DataFrame,
    phenotypes: pd.DataFrame,
    covariates: pd.DataFrame | None = None,
    sources: dict[str, str] | None = None,
    dtype=None,
) -> pd.DataFrame:
    """Long table of every latent x phenotype: n, Spearman rho/p/q, Pearson r/p/q, source, kind.

    `latents` and `phenotypes` share their index (subject ids) and hold numbers (NaN = missing).
    `covariates` (numeric, same index) are partialled out of both sides. `sources` maps a phenotype
    to where it came from (a modality name or "covariates").
    """
    x = latents.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    # float32 input stays float32: a cohort-sized phenotype matrix is not doubled in memory
    y_dtype = np.float32 if all(d == np.float32 for d in phenotypes.dtypes) else np.float64
    y = phenotypes.to_numpy(dtype=y_dtype, na_value=np.nan, copy=True)
    covariate_matrix = None
    if covariates is not None and covariates.shape[1]:
        covariate_matrix = covariates.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        incomplete = np.isnan(covariate_matrix).any(axis=1)
        x[incomplete] = np.nan
        y[incomplete] = np.nan
        covariate_matrix[incomplete] = np.nan
        covariate_matrix = _drop_constant(covariate_matrix[~incomplete], covariate_matrix)
    both = correlate_methods(x, y, ("spearman", "pearson"), covariate_matrix, dtype=dtype)
    spearman, pearson = both["spearman"], both["pearson"]
    kinds = dict(zip(phenotypes.columns, np.where(binary_columns(y), "binary", "continuous")))
    n_latents, n_phenotypes = spearman.r.shape
    table = pd.DataFrame(
        {
            "latent": np.repeat(np.asarray(latents.columns, dtype=object), n_phenotypes),
            "phenotype": np.tile(np.asarray(phenotypes.columns, dtype=object), n_latents),
            "n": spearman.n.ravel(),
            "rho": spearman.r.ravel(),
            "p": spearman.p.ravel(),
            "q": benjamini_hochberg(spearman.p).ravel(),
            "pearson_r": pearson.r.ravel(),
            "pearson_p": pearson.p.ravel(),
            "pearson_q": benjamini_hochberg(pearson.p).ravel(),
        }
    )
    table["source"] = table["phenotype"].map(sources or {}).fillna("")
    table["kind"] = table["phenotype"].map(kinds)
    return table[RESULT_COLUMNS]


def binary_columns(values: np.ndarray) -> np.ndarray:
    """Which columns take exactly two distinct observed values (vectorised: no per-column unique)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        two_valued = ((values == low) | (values == high) | np.isnan(values)).all(axis=0)
    return two_valued & (low < high)


def _drop_constant(complete_rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Covariates constant over the analysed subjects would make the regression singular."""
    if complete_rows.shape[0] == 0:
        return matrix
    varying = complete_rows.std(axis=0) > 0
    return matrix[:, varying]


def correlation_of_latents(latents: pd.DataFrame, method: str = "spearman") -> pd.DataFrame:
    """Latent x latent correlation matrix (pairwise complete)."""
    values = latents.to_numpy(dtype=np.float64, na_value=np.nan)
    result = correlate(values, values, method)
    return pd.DataFrame(result.r, index=latents.columns, columns=latents.columns)
