"""PC read-out with background knowledge: nothing causes age or sex; modality order is respected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from graph_run_fixture import make_run_folder

from mmcrl_core.errors import UserInputError
from mmcrl_core.pc_readout import (
    default_exogenous,
    numeric_phenotypes,
    pc_graph_from_run,
    read_phenotypes_csv,
    run_pc,
)


def collider(target: str, n: int = 800, seed: int = 0, binary: bool = False) -> pd.DataFrame:
    """x -> target <- y with x, y independent: PC without knowledge orients both into `target`."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(size=n)
    z = x + y + 0.5 * rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": y, target: (z > 0).astype(float) if binary else z})


def edges_into(edges: list[dict], node: str) -> list[dict]:
    """Edges that put an arrowhead on `node` or leave it unoriented."""
    return [
        e for e in edges
        if e["target"] == node or (e["orientation"] == "undirected" and node in (e["source"], e["target"]))
    ]


@pytest.mark.parametrize("name,binary", [("age", False), ("sex", True)])
def test_background_knowledge_never_orients_into_age_or_sex(name, binary):
    data = collider(name, binary=binary)
    free = run_pc(data, exogenous=[], alpha=0.05)
    assert {(e["source"], e["target"]) for e in free if e["orientation"] == "directed"} == {("x", name), ("y", name)}
    constrained = run_pc(data, exogenous=[name], alpha=0.05)
    assert constrained, "the dependence between x, y and the exogenous variable must still show as edges"
    assert edges_into(constrained, name) == []
    assert all(e["source"] == name for e in constrained if name in (e["source"], e["target"]))


def test_modality_order_forbids_edges_from_later_to_earlier_modalities():
    rng = np.random.default_rng(1)
    n = 800
    r1, r2 = rng.normal(size=n), rng.normal(size=n)
    data = pd.DataFrame({"retina:1": r1, "retina:2": r2, "sleep:1": r1 + r2 + 0.5 * rng.normal(size=n)})
    free = run_pc(data, alpha=0.05)
    assert {e["target"] for e in free if e["orientation"] == "directed"} == {"sleep:1"}
    tiers = {"sleep:1": 0, "retina:1": 1, "retina:2": 1}
    constrained = run_pc(data, tiers=tiers, alpha=0.05)
    assert constrained
    for edge in constrained:
        assert tiers[edge["source"]] <= tiers[edge["target"]]
        if tiers[edge["source"]] != tiers[edge["target"]]:
            assert edge["orientation"] == "directed"


def test_pc_graph_from_run_keeps_age_and_sex_exogenous(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    phenotypes = read_phenotypes_csv(run_dir / "phenotypes.csv")
    graph = pc_graph_from_run(run_dir, phenotypes)
    assert {"age", "sex", "bmi <&>"} <= set(graph.nodes)
    assert graph.nodes["age"]["kind"] == "phenotype" and "exogenous" in graph.nodes["age"]["description"]
    assert graph.graph["exogenous"] == "age, sex"
    assert graph.graph["test"] == "fisherz" and graph.graph["alpha"] == 0.1
    for exogenous in ("age", "sex"):
        assert list(graph.in_edges(exogenous)) == []
        assert all(a["orientation"] == "directed" for *_, a in graph.out_edges(exogenous, data=True))
    assert graph.has_edge("age", "sleep:1")  # the fixture's truth: age drives sleep:1
    for source, target, attrs in graph.edges(data=True):
        assert attrs["method"] == "pc-fisherz"
        if graph.nodes[source]["kind"] == graph.nodes[target]["kind"] == "latent":
            assert graph.nodes[source]["tier"] <= graph.nodes[target]["tier"]


def test_pc_on_latents_only(tmp_path):
    graph = pc_graph_from_run(make_run_folder(tmp_path / "run"), None)
    assert all(a["kind"] == "latent" for _, a in graph.nodes(data=True))
    assert graph.has_edge("sleep:1", "retina:1") or graph.has_edge("retina:1", "sleep:1")


@pytest.mark.slow
def test_kernel_test_option_respects_knowledge():
    data = collider("age", n=300, seed=3)
    edges = run_pc(data, exogenous=["age"], test="kci", alpha=0.05, kci_max_rows=150)
    assert edges and edges_into(edges, "age") == []


def test_default_exogenous_names():
    columns = ["Age", "age (years)", "sex_at_birth", "Gender", "stage", "agency", "bmi", "Sex"]
    assert default_exogenous(columns) == ["Age", "age (years)", "sex_at_birth", "Gender", "Sex"]


def test_numeric_phenotypes_codes_two_levels_and_rejects_more():
    frame = pd.DataFrame({"sex": ["M", "F", None, "F"], "bmi": [20.0, 21.5, 22.0, None]})
    numeric = numeric_phenotypes(frame)
    assert numeric["sex"].tolist()[:2] == [1.0, 0.0] and np.isnan(numeric["sex"].iloc[2])
    assert numeric["bmi"].dtype == float
    with pytest.raises(UserInputError, match="colour"):
        numeric_phenotypes(pd.DataFrame({"colour": ["red", "green", "blue"]}))


def test_bad_settings_are_user_errors():
    data = collider("age", n=50)
    with pytest.raises(UserInputError, match="alpha"):
        run_pc(data, alpha=1.5)
    with pytest.raises(UserInputError, match="test"):
        run_pc(data, test="chisq")
    with pytest.raises(UserInputError, match="constant"):
        run_pc(data.assign(flat=1.0))
    with pytest.raises(UserInputError, match="complete rows"):
        run_pc(data.head(5))


def test_phenotypes_without_common_subjects(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    phenotypes = read_phenotypes_csv(run_dir / "phenotypes.csv")
    phenotypes.index = "X" + phenotypes.index
    with pytest.raises(UserInputError, match="in common"):
        pc_graph_from_run(run_dir, phenotypes)
