import json

import numpy as np
import pandas as pd
import pytest

from mmcrl_core.cli import main
from mmcrl_core.errors import UserInputError
from mmcrl_core.simulate import (
    SETTINGS,
    SimulationSettings,
    every_modality_has_cross_edge,
    is_acyclic,
    mixable_within_edges,
    satisfies_sparsity_condition,
    simulate,
    write_simulation,
)


def _block(data):
    return np.array([name.rpartition(":")[0] for name in data.latents.columns])


def test_shapes_and_names_of_case2():
    data = simulate("case2", seed=0, n=300)
    assert list(data.observed) == ["m1", "m2"]
    assert data.observed["m1"].shape == (300, 20)
    assert list(data.observed["m2"].columns[:2]) == ["m2_x1", "m2_x2"]
    assert data.observed["m1"].index.name == "subject_id"
    assert list(data.latents.columns) == ["m1:1", "m1:2", "m1:3", "m2:1", "m2:2", "m2:3"]
    assert list(data.adjacency.index) == list(data.adjacency.columns) == list(data.latents.columns)
    assert set(np.unique(data.adjacency.to_numpy())) <= {0, 1}
    # latents and observed columns are standardised
    assert np.allclose(data.latents.mean(), 0, atol=1e-9) and np.allclose(data.latents.std(ddof=0), 1)
    assert np.allclose(data.observed["m2"].std(ddof=0), 1)


def test_deterministic_in_seed():
    a, b, c = simulate("tiny", seed=3), simulate("tiny", seed=3), simulate("tiny", seed=4)
    pd.testing.assert_frame_equal(a.observed["m1"], b.observed["m1"])
    pd.testing.assert_frame_equal(a.latents, b.latents)
    pd.testing.assert_frame_equal(a.adjacency, b.adjacency)
    assert not np.allclose(a.latents.to_numpy(), c.latents.to_numpy())


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_setting_respects_its_graph_contract(name):
    data = simulate(name, seed=1, n=200)
    adjacency = data.adjacency.to_numpy()
    block = _block(data)
    assert every_modality_has_cross_edge(adjacency, block)
    assert np.all(np.diag(adjacency) == 0)
    if data.settings.enforce_sparsity_condition and data.settings.cyclic in ("none", "within"):
        assert satisfies_sparsity_condition(adjacency, block)
        assert data.sparsity_condition
    assert is_acyclic(adjacency) == (data.settings.cyclic == "none")
    cross = block[:, None] != block[None, :]
    if data.settings.cyclic != "across":  # cross-modal edges follow the modality order
        assert not np.any(np.tril(adjacency * cross))


def test_within_cycles_go_only_where_they_keep_the_latents_identifiable():
    kept = simulate("cyclic_within", seed=0, n=200)
    adjacency, block = kept.adjacency.to_numpy(), _block(kept)
    within = (block[:, None] == block[None, :]) & (adjacency != 0)
    first, last = block == block[0], block == block[-1]
    assert within[np.ix_(first, first)].sum() >= first.sum()  # the first modality's cycle
    assert not within[np.ix_(last, last)].any()  # none among latents without cross-modal children
    assert kept.sparsity_condition and not is_acyclic(adjacency)

    settings = kept.settings.model_copy(update={"enforce_sparsity_condition": False})
    every = simulate(settings, seed=0, n=200)
    assert (every.adjacency.to_numpy()[np.ix_(last, last)] != 0).any()
    assert not every.sparsity_condition


def test_sparsity_ablation_gets_denser():
    counts = []
    for name in ["sparsity_50", "sparsity_25", "sparsity_0"]:
        data = simulate(name, seed=0, n=100)
        block = _block(data)
        counts.append(int((data.adjacency.to_numpy() * (block[:, None] != block[None, :])).sum()))
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert counts[-1] == 9  # sparsity_0 keeps every allowed edge of 3 x 3 latents


def test_sparsity_condition_on_hand_made_graphs():
    block = np.array([0, 0, 1, 1])

    def adjacency(edges):
        a = np.zeros((4, 4), dtype=int)
        for p, c in edges:
            a[p, c] = 1
        return a

    assert satisfies_sparsity_condition(adjacency([(0, 2), (1, 3)]), block)
    assert not satisfies_sparsity_condition(adjacency([(0, 2), (0, 3)]), block)  # latent 1 has no cross edge
    assert not satisfies_sparsity_condition(adjacency([(0, 2), (1, 2), (1, 3)]), block)  # nested: {2} < {2, 3}
    # within-modality edges do not count towards the neighbourhoods
    assert not satisfies_sparsity_condition(adjacency([(0, 2), (0, 3), (0, 1)]), block)
    # ...but a child whose cross-modal children its within-modality parent also drives can absorb
    # that parent unseen: every within edge of the last modality, here 2 -> 3
    assert not satisfies_sparsity_condition(adjacency([(0, 2), (1, 3), (2, 3)]), block)
    assert satisfies_sparsity_condition(adjacency([(0, 2), (1, 3), (0, 1)]), block)  # 1 drives 3, 0 does not
    assert not satisfies_sparsity_condition(adjacency([(0, 2), (1, 3), (0, 3), (0, 1)]), block)  # 0 drives 3 too


def test_drawn_graphs_keep_no_mixable_within_edge():
    for seed in range(5):
        data = simulate("case2", seed=seed, n=50)
        assert not mixable_within_edges(data.adjacency.to_numpy(), _block(data)).any()
        last = [c for c in data.adjacency.columns if c.startswith("m2:")]
        assert data.adjacency.loc[last, last].to_numpy().sum() == 0  # the last modality drives nothing


def test_parents_drive_children():
    data = simulate("case1", seed=0, n=4000)
    z = data.latents
    for parent, child in zip(*np.nonzero(data.adjacency.to_numpy())):
        a, b = z.iloc[:, parent], z.iloc[:, child]
        # nonlinear dependence: either linear or rank correlation, or dependence of squares
        dependence = max(abs(a.corr(b)), abs(a.corr(b, method="spearman")), abs((a**2).corr(b)), abs(a.corr(b**2)))
        assert dependence > 0.1


def test_non_gaussian_noise_and_observation_noise():
    settings = SimulationSettings(modalities=3, latents=2, obs_dim=5, n=500, noise="laplace", obs_noise=0.1)
    data = simulate(settings, seed=0)
    assert data.latents.shape == (500, 6) and len(data.observed) == 3


def test_mixing_dimension_must_allow_invertibility():
    with pytest.raises(UserInputError, match="obs_dim"):
        simulate(SimulationSettings(latents=3, nuisance=1, obs_dim=3, n=50))


def test_unknown_setting_lists_valid_names():
    with pytest.raises(UserInputError, match="case1"):
        simulate("nope")


def test_write_simulation_layout(tmp_path):
    data = simulate("tiny", seed=0, n=50)
    write_simulation(data, tmp_path)
    m1 = pd.read_csv(tmp_path / "m1.csv")
    assert m1.columns[0] == "subject_id" and m1.shape == (50, 7)
    latents = pd.read_csv(tmp_path / "truth" / "latents.csv", index_col=0)
    assert list(latents.columns) == list(data.latents.columns)
    adjacency = pd.read_csv(tmp_path / "truth" / "adjacency.csv", index_col=0)
    assert (adjacency.to_numpy() == data.adjacency.to_numpy()).all()
    assert json.loads((tmp_path / "truth" / "settings.json").read_text())["name"] == "tiny"


def test_cli_simulate_writes_the_contract(tmp_path):
    out = tmp_path / "sim"
    code = main(["simulate", "--setting", "case1", "--modalities", "3", "--latents", "2", "--eta", "1",
                 "--obs-dim", "5", "--n", "120", "--seed", "2", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["m1.csv", "m2.csv", "m3.csv"]
    assert pd.read_csv(out / "m3.csv").shape == (120, 6)
    assert pd.read_csv(out / "truth" / "latents.csv").shape == (120, 7)
    assert (out / "truth" / "adjacency.csv").exists()


def test_cli_simulate_bad_input_exits_2(tmp_path, capsys):
    assert main(["simulate", "--setting", "bogus", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "case1" in err and "mod8" in err
    assert main(["simulate", "--latents", "4", "--obs-dim", "3", "--out", str(tmp_path)]) == 2
    assert "obs_dim" in capsys.readouterr().err
