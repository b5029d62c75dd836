import numpy as np
import pandas as pd
import pytest

from mmcrl_core import metrics as M


def _adjacency(names, edges):
    frame = pd.DataFrame(0, index=pd.Index(names, name="parent"), columns=names)
    for parent, child in edges:
        frame.loc[parent, child] = 1
    return frame


NAMES = ["m1:1", "m1:2", "m2:1", "m2:2"]


def test_abs_correlation_matches_hand_computed_value():
    # centred x = (-1.5, -0.5, 0.5, 1.5), y = (-1.5, 0.5, -0.5, 1.5): dot 4, norms sqrt(5) each -> 0.8
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([[1.0], [3.0], [2.0], [4.0]])
    assert M.abs_correlation(x, y)[0, 0] == pytest.approx(0.8)
    assert M.abs_correlation(x, -y)[0, 0] == pytest.approx(0.8)
    assert M.abs_correlation(x, y, method="spearman")[0, 0] == pytest.approx(0.8)


def test_hungarian_beats_greedy_on_a_known_2x2_matrix():
    # greedy takes 0.9 then 0.1 (mean 0.5); the optimal matching is 0.8 + 0.7 -> 0.75
    result = M.mcc_from_correlation(np.array([[0.9, 0.8], [0.7, 0.1]]))
    assert result.value == pytest.approx(0.75)
    assert sorted(result.matching) == [(0, 1), (1, 0)]


def test_perfect_permuted_scaled_recovery_scores_one():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 3))
    estimated = np.column_stack([-2 * z[:, 2], 5 * z[:, 0] + 1, 0.1 * z[:, 1]])
    result = M.mcc(z, estimated)
    assert result.value == pytest.approx(1.0)
    assert sorted(result.matching) == [(0, 1), (1, 2), (2, 0)]
    # Spearman is invariant to monotone maps; Pearson is not
    monotone = np.column_stack([np.exp(z[:, 1]), z[:, 0] ** 3, np.tanh(z[:, 2])])
    assert M.mcc(z, monotone, method="spearman").value == pytest.approx(1.0)
    assert M.mcc(z, monotone).value < 0.95


def test_independent_estimate_scores_near_zero():
    rng = np.random.default_rng(1)
    assert M.mcc(rng.normal(size=(5000, 2)), rng.normal(size=(5000, 2))).value < 0.05


def test_mcc_by_modality_matches_only_inside_modalities():
    rng = np.random.default_rng(2)
    true = pd.DataFrame(rng.normal(size=(1000, 4)), columns=NAMES)
    # estimated m1 carries the true m2 latents and vice versa: a global matching would be perfect,
    # the within-modality promise is broken
    swapped = pd.DataFrame(true[["m2:1", "m2:2", "m1:1", "m1:2"]].to_numpy(), columns=NAMES)
    block = M.mcc_by_modality(true, swapped)
    assert block.global_value == pytest.approx(1.0)
    assert block.value < 0.1
    permuted = pd.DataFrame(true[["m1:2", "m1:1", "m2:1", "m2:2"]].to_numpy() * 3, columns=NAMES)
    block = M.mcc_by_modality(true, permuted)
    assert block.value == pytest.approx(1.0)
    assert block.per_modality == {"m1": pytest.approx(1.0), "m2": pytest.approx(1.0)}
    assert block.matching == {"m1:1": "m1:2", "m1:2": "m1:1", "m2:1": "m2:1", "m2:2": "m2:2"}


def test_kernel_ridge_r2_high_for_invertible_map_and_low_for_noise():
    rng = np.random.default_rng(3)
    true = pd.DataFrame(rng.normal(size=(1200, 4)), columns=NAMES)
    warped = pd.DataFrame(np.tanh(true.to_numpy()) + 0.3 * true.to_numpy() ** 3, columns=NAMES)
    assert M.kernel_ridge_r2(true, warped, max_train=600, max_test=600) > 0.95
    noise = pd.DataFrame(rng.normal(size=(1200, 4)), columns=NAMES)
    assert M.kernel_ridge_r2(true, noise, max_train=600, max_test=600) < 0.1


def test_shd_counts_reversed_missing_and_extra_edges_once_each():
    true = _adjacency(NAMES, [("m1:1", "m2:1")])
    assert M.shd(true, true) == 0
    assert M.shd(true, _adjacency(NAMES, [("m2:1", "m1:1")])) == 1  # reversed
    assert M.shd(true, _adjacency(NAMES, [])) == 1  # missing
    assert M.shd(true, _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:2", "m2:2")])) == 1  # extra
    assert M.shd(true, _adjacency(NAMES, [("m2:1", "m1:1"), ("m1:2", "m2:2")])) == 2
    # cross-modal SHD ignores pairs inside a modality
    within_wrong = _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:1", "m1:2")])
    assert M.shd(true, within_wrong) == 1 and M.shd(true, within_wrong, cross_modal_only=True) == 0


def test_edge_scores_of_a_known_prediction():
    true = _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:2", "m2:2"), ("m1:1", "m1:2")])
    predicted = _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:1", "m2:2")])
    scores = M.edge_scores(true, predicted)  # within-modality edge m1:1 -> m1:2 does not count
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((0.5, 0.5, 0.5))
    reversed_ = _adjacency(NAMES, [("m2:1", "m1:1"), ("m1:2", "m2:2")])
    assert M.edge_scores(true, reversed_).f1 == pytest.approx(0.5)
    assert M.edge_scores(true, reversed_, directed=False).f1 == pytest.approx(1.0)


def test_all_allowed_cross_edges_reference():
    true = _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:2", "m2:2")])
    reference = M.all_allowed_cross_edges_reference(true)
    assert reference.predicted_edges == 4  # every m1 -> m2 pair
    assert (reference.precision, reference.recall, reference.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    # the order decides the direction: reversed order predicts only m2 -> m1 edges
    assert M.all_allowed_cross_edges_reference(true, order=["m2", "m1"]).f1 == 0.0


def test_graph_scores_align_a_permuted_estimate():
    true = _adjacency(NAMES, [("m1:1", "m2:1"), ("m1:1", "m1:2")])
    # the estimate names latents in another order inside each modality
    matching = {"m1:1": "m1:2", "m1:2": "m1:1", "m2:1": "m2:2", "m2:2": "m2:1"}
    estimated = _adjacency(NAMES, [("m1:2", "m2:2"), ("m1:2", "m1:1")])
    scores = M.graph_scores(true, estimated, matching)
    assert scores.shd == 0 and scores.cross.f1 == 1.0
    unaligned = M.graph_scores(true, estimated, {n: n for n in NAMES})
    assert unaligned.cross.f1 == 0.0 and unaligned.shd == 3  # one reversed, one missing, one extra
