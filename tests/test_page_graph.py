"""The causal graph page renders with AppTest: learned graph, group support, filters, PC, inspector."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from graph_run_fixture import HOSTILE, make_run_folder, seed_group
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "graph.py")


def iframe_html(at: AppTest) -> str:
    """The srcdoc the page handed to st.iframe (AppTest shows iframes as UnknownElement)."""
    frames = [e for e in at.get("iframe")]
    assert len(frames) == 1
    return frames[0].proto.srcdoc


def start(workspace, run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if run_id:
        at.session_state["run_id"] = run_id
    return at.run()


def captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_empty_workspace_says_what_to_do(workspace):
    at = start(workspace)
    assert not at.exception
    assert "No finished runs" in at.info[0].value


def test_learned_graph_with_group_support_and_filters(workspace):
    seed_group(workspace.models_dir, seeds=3, drop_in_last=(("sleep:2", "retina:2"),))
    at = start(workspace, "run-s0")
    assert not at.exception and not at.error
    assert at.selectbox(key="graph_run").value == "run-s0"
    assert "3 edges shown" in captions(at) and "over the 3 runs of group grp-1" in captions(at)
    page = iframe_html(at)
    assert "vis.Network" in page and "<script>alert(1)</script>" not in page
    assert html.escape(HOSTILE) in page.replace("\\u0026", "&")

    at.checkbox(key="graph_cross_only").check().run()
    assert "2 edges shown" in captions(at)
    at.slider(key="graph_min_support").set_value(0.9).run()
    assert "1 edges shown" in captions(at)  # sleep:2 -> retina:2 is in 2 of 3 seeds only
    assert len(at.get("download_button")) == 7


def test_picking_a_run_makes_it_active_and_threshold_changes_edges(workspace):
    make_run_folder(workspace.models_dir / "run-a", run_id="run-a")
    make_run_folder(workspace.models_dir / "run-b", run_id="run-b", seed=4)
    at = start(workspace)
    at.selectbox(key="graph_run").set_value("run-b").run()
    assert at.session_state["run_id"] == "run-b"
    at.checkbox(key="graph_own_rule").uncheck().run()
    at.slider(key="graph_threshold").set_value(0.0).run()
    assert not at.exception
    assert "20 edges shown" not in captions(at)  # order forbids retina -> sleep: 14 allowed pairs
    assert "14 edges shown" in captions(at)


def test_node_inspector_shows_parents_children_and_text(workspace):
    make_run_folder(workspace.models_dir / "run-a", run_id="run-a")
    at = start(workspace, "run-a")
    at.selectbox(key="graph_inspect").set_value("sleep:1").run()
    assert HOSTILE in [t.value for t in at.text]
    neighbours = [f.value for f in at.dataframe if "node" in f.value.columns]
    assert len(neighbours) == 1  # sleep:1 has children only: no empty parents grid
    assert "None among the nodes shown." in captions(at)
    assert set(neighbours[0]["node"]) == {"sleep:3", "retina:1"}


def _run_pc(at: AppTest, columns: list[str]) -> AppTest:
    assert set(columns) <= set(at.multiselect(key="graph_pc_columns").options)
    at.multiselect(key="graph_pc_columns").set_value(columns).run()
    at.toggle(key="graph_pc_on").set_value(True).run()
    assert not at.exception and not at.error
    return at


@pytest.mark.slow
def test_pc_readout_with_a_phenotypes_csv(workspace):
    run_dir = make_run_folder(workspace.models_dir / "run-a", run_id="run-a")
    at = start(workspace, "run-a")
    at.radio(key="graph_readout").set_value("pc").run()
    at.text_input(key="graph_pc_csv").input(str(run_dir / "phenotypes.csv")).run()
    at = _run_pc(at, ["age", "sex", "bmi <&>"])
    assert "Read-out: PC (fisherz" in captions(at)
    assert "8 nodes" in captions(at)
    assert "<script>alert(1)</script>" not in iframe_html(at)
    at.checkbox(key="graph_show_pheno").uncheck().run()
    assert "5 nodes" in captions(at)


@pytest.mark.slow
def test_pc_readout_with_phenotypes_of_the_runs_data(workspace):
    make_run_folder(workspace.models_dir / "run-a", run_id="run-a")
    at = start(workspace, "run-a")
    at.radio(key="graph_readout").set_value("pc").run()
    at = _run_pc(at, ["age", "sex"])
    assert "7 nodes" in captions(at)
    at.selectbox(key="graph_inspect").set_value("sleep:1").run()
    assert "age" in set(at.dataframe[-1].value["phenotype"])  # top phenotypes of sleep:1


def test_inspector_names_top_phenotypes_of_a_latent_in_the_learned_graph(workspace):
    make_run_folder(workspace.models_dir / "run-a", run_id="run-a")
    at = start(workspace, "run-a")
    at.selectbox(key="graph_inspect").set_value("sleep:1").run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert list(table.columns) == ["phenotype", "Spearman rho", "q (BH-adjusted)", "subjects"]
    assert "age" in set(table["phenotype"])
    # q-values read as numbers a person can compare, never 0.000000000000001
    assert all(len(q) <= 8 for q in table["q (BH-adjusted)"])
