"""Vectorised correlations, p and q values against scipy, null calibration and planted signals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmcrl_core.associations import (
    RESULT_COLUMNS,
    association_table,
    average_ranks,
    benjamini_hochberg,
    correlate,
    correlation_of_latents,
)


def _pairwise(xc, yc, test):
    both = ~np.isnan(xc) & ~np.isnan(yc)
    return test(xc[both], yc[both]), int(both.sum())


def test_average_ranks_match_scipy_with_ties_and_nan():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(size=50), rng.integers(0, 3, 50), rng.integers(0, 2, 50)]).astype(float)
    values[rng.random(values.shape) < 0.2] = np.nan
    ranks = average_ranks(values)
    for j in range(values.shape[1]):
        observed = ~np.isnan(values[:, j])
        np.testing.assert_allclose(ranks[observed, j], stats.rankdata(values[observed, j]))
        assert np.isnan(ranks[~observed, j]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pearson_with_missing_values_matches_scipy_pair_by_pair(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    y = np.column_stack([x[:, 0] + rng.normal(size=200), rng.normal(size=(200, 3)), rng.integers(0, 2, 200)])
    x[rng.random(x.shape) < 0.1] = np.nan
    y[rng.random(y.shape) < 0.25] = np.nan
    result = correlate(x, y, "pearson", dtype=dtype, block=2)  # small blocks: exercise the threaded path
    tolerance = 1e-10 if dtype == np.float64 else 1e-5
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            (r, p), n = _pairwise(x[:, i], y[:, j], stats.pearsonr)
            assert result.n[i, j] == n
            assert result.r[i, j] == pytest.approx(r, abs=tolerance)
            assert result.p[i, j] == pytest.approx(p, rel=1e-3, abs=tolerance)


def test_spearman_without_missing_values_matches_scipy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 2))
    y = np.column_stack([np.exp(x[:, 0]) + rng.normal(size=150), np.round(rng.normal(size=150))])
    result = correlate(x, y, "spearman")
    for i in range(2):
        for j in range(2):
            rho, p = stats.spearmanr(x[:, i], y[:, j])
            assert result.r[i, j] == pytest.approx(rho, abs=1e-12)
            assert result.p[i, j] == pytest.approx(p, rel=1e-6)


def test_binary_phenotype_gives_point_biserial_and_two_sample_t():
    rng = np.random.default_rng(3)
    group = rng.integers(0, 2, 300).astype(float)
    latent = 0.5 * group + rng.normal(size=300)
    result = correlate(latent[:, None], group[:, None], "pearson")
    r, _ = stats.pointbiserialr(group, latent)
    t_test = stats.ttest_ind(latent[group == 1], latent[group == 0])
    assert result.r[0, 0] == pytest.approx(r)
    assert result.p[0, 0] == pytest.approx(t_test.pvalue, rel=1e-6)


def test_constant_and_too_short_columns_give_nan_not_errors():
    x = np.arange(10, dtype=float)[:, None]
    y = np.column_stack([np.ones(10), np.r_[1.0, 2.0, np.full(8, np.nan)]])
    result = correlate(x, y, "pearson")
    assert np.isnan(result.r).all() and np.isnan(result.p).all()


def test_benjamini_hochberg_matches_scipy_and_keeps_nan():
    p = np.random.default_rng(4).random((7, 9)) ** 3
    p[2, 3] = np.nan
    q = benjamini_hochberg(p)
    finite = ~np.isnan(p)
    np.testing.assert_allclose(q[finite], stats.false_discovery_control(p[finite]))
    assert np.isnan(q[2, 3])


def _cohort(n=2000, n_latents=5, n_phenotypes=60, seed=0):
    rng = np.random.default_rng(seed)
    latents = pd.DataFrame(rng.normal(size=(n, n_latents)), columns=[f"m:{i + 1}" for i in range(n_latents)])
    phenotypes = pd.DataFrame(rng.normal(size=(n, n_phenotypes)), columns=[f"ph{j}" for j in range(n_phenotypes)])
    phenotypes.iloc[:, :10] = (phenotypes.iloc[:, :10] > 0).astype(float)  # some binary phenotypes
    phenotypes = phenotypes.mask(rng.random(phenotypes.shape) < 0.1)
    return latents, phenotypes, rng


def test_null_data_is_calibrated():
    latents, phenotypes, rng = _cohort()
    # real phenotypes from structured latents, then shuffled: any association left is chance
    phenotypes["planted"] = latents["m:1"] + rng.normal(size=len(latents))
    shuffled = phenotypes.apply(lambda col: pd.Series(rng.permutation(col.to_numpy()), index=col.index))
    table = association_table(latents, shuffled)
    assert (table["p"] < 0.05).mean() == pytest.approx(0.05, abs=0.025)  # p-values uniform under the null
    assert (table["pearson_p"] < 0.05).mean() == pytest.approx(0.05, abs=0.025)
    assert (table["q"] < 0.05).mean() <= 0.05
    assert (table["pearson_q"] < 0.05).mean() <= 0.05


def test_planted_associations_are_found_with_the_right_sign():
    latents, phenotypes, rng = _cohort(seed=5)
    phenotypes["rises"] = np.exp(0.3 * latents["m:2"]) + rng.normal(size=len(latents))
    phenotypes["falls"] = -0.2 * latents["m:4"] + rng.normal(size=len(latents))
    phenotypes["case"] = (latents["m:3"] + rng.normal(size=len(latents)) > 1).astype(float)
    table = association_table(latents, phenotypes).set_index(["latent", "phenotype"])
    assert list(association_table(latents.iloc[:, :1], phenotypes.iloc[:, :1]).columns) == RESULT_COLUMNS
    for (latent, phenotype), sign in {("m:2", "rises"): 1, ("m:4", "falls"): -1, ("m:3", "case"): 1}.items():
        row = table.loc[(latent, phenotype)]
        assert row["q"] < 0.001 and row["pearson_q"] < 0.001
        assert np.sign(row["rho"]) == sign and np.sign(row["pearson_r"]) == sign
    assert table.loc[("m:3", "case"), "kind"] == "binary"
    assert table.loc[("m:2", "rises"), "kind"] == "continuous"
    assert table.loc[("m:2", "rises"), "n"] == len(latents)
    false_discoveries = set(table[table["q"] < 0.05].index) - {("m:2", "rises"), ("m:4", "falls"), ("m:3", "case")}
    assert len(false_discoveries) <= 2  # FDR 5% of 3 true findings: rarely more than one false


def test_adjusting_for_a_confounder_removes_a_spurious_association():
    rng = np.random.default_rng(6)
    n = 1500
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n).astype(float)
    latents = pd.DataFrame({"m:1": 0.05 * age + rng.normal(size=n), "m:2": rng.normal(size=n)})
    phenotypes = pd.DataFrame({"grip": 0.05 * age + 0.5 * sex + rng.normal(size=n),
                               "bp": 0.8 * latents["m:2"] + rng.normal(size=n)})
    covariates = pd.DataFrame({"age": age, "sex": sex})
    covariates.loc[:9, "age"] = np.nan  # subjects missing a covariate are dropped
    raw = association_table(latents, phenotypes).set_index(["latent", "phenotype"])
    adjusted = association_table(latents, phenotypes, covariates).set_index(["latent", "phenotype"])
    assert raw.loc[("m:1", "grip"), "q"] < 1e-6
    assert adjusted.loc[("m:1", "grip"), "p"] > 0.001
    assert adjusted.loc[("m:2", "bp"), "q"] < 1e-6 and adjusted.loc[("m:2", "bp"), "rho"] > 0
    assert adjusted.loc[("m:1", "grip"), "n"] == n - 10
    # Pearson partial correlation = correlation of residuals after OLS on [1, age, sex]
    keep = covariates.notna().all(axis=1).to_numpy()
    design = np.column_stack([np.ones(keep.sum()), covariates[keep].to_numpy()])

    def residual(v):
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    expected = np.corrcoef(residual(latents["m:1"].to_numpy()[keep]), residual(phenotypes["grip"].to_numpy()[keep]))
    assert adjusted.loc[("m:1", "grip"), "pearson_r"] == pytest.approx(expected[0, 1], abs=1e-10)


def test_latent_correlation_matrix_is_symmetric_with_unit_diagonal():
    latents, _, _ = _cohort(n=300, n_latents=4)
    matrix = correlation_of_latents(latents)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T, atol=1e-12)


def test_float32_ranks_handle_ties_signed_zero_infinity_and_nan():
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(size=(300, 40)) * 2).astype(np.float32)  # many ties
    values[0, 0], values[1, 0], values[2, 0], values[3, 0] = -0.0, 0.0, np.inf, -np.inf
    values[rng.random(values.shape) < 0.1] = np.nan
    ranks = average_ranks(values)
    assert ranks.dtype == np.float32
    for j in range(values.shape[1]):
        observed = ~np.isnan(values[:, j])
        np.testing.assert_allclose(ranks[observed, j], stats.rankdata(values[observed, j]))
        assert np.isnan(ranks[~observed, j]).all()
