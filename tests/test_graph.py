"""graph.py: a run folder -> DiGraph with attributes, thresholds, filters, the export command."""

from __future__ import annotations

import json

import networkx as nx
import pandas as pd
import pytest
from graph_run_fixture import HOSTILE, HOSTILE_DATASET, LATENTS, make_run_folder

from mmcrl_core import runfolder as rf
from mmcrl_core.cli import main as cli_main
from mmcrl_core.errors import UserInputError
from mmcrl_core.graph import (
    ADJACENCY_CONVENTION,
    GraphFilter,
    filter_graph,
    finished_runs,
    learned_graph,
    load_run_info,
    node_summary,
    strength_range,
    write_all_formats,
)


@pytest.fixture
def run_dir(tmp_path):
    return make_run_folder(tmp_path / "run")


def test_learned_graph_matches_the_run_folder(run_dir):
    graph = learned_graph(run_dir)
    edges = rf.read_edges(run_dir)
    assert set(graph.nodes) == set(LATENTS)
    assert {(s, t) for s, t in graph.edges} == set(zip(edges.source, edges.target))
    for row in edges.itertuples(index=False):
        attrs = graph.edges[row.source, row.target]
        assert attrs["weight"] == pytest.approx(row.weight)
        assert attrs["cross_modal"] == bool(row.cross_modal)
        assert attrs["support"] == pytest.approx(row.support)
        assert attrs["method"] == "adjacency"
    sleep = graph.nodes["sleep:1"]
    assert (sleep["modality"], sleep["kind"], sleep["label"]) == ("sleep", "latent", HOSTILE)
    assert "onerror" in sleep["description"]
    assert graph.nodes["sleep:2"]["label"] == "sleep:2"  # no user label: the latent's name
    assert graph.nodes["retina:1"]["tier"] > graph.nodes["sleep:1"]["tier"]


def test_provenance_comes_from_the_manifest(run_dir):
    manifest = rf.read_manifest(run_dir)
    graph = learned_graph(run_dir)
    assert graph.graph["run_id"] == "run-hostile"
    assert graph.graph["dataset"] == HOSTILE_DATASET
    assert graph.graph["seed"] == 0
    assert graph.graph["config_hash"] == manifest["config_hash"]
    assert graph.graph["threshold"] == pytest.approx(manifest["graph_readout"]["threshold"])
    assert graph.graph["threshold_kind"] == "relative"
    assert graph.graph["adjacency_convention"] == ADJACENCY_CONVENTION
    assert "learned adjacency" in graph.graph["readout"]


def test_threshold_on_strengths_is_adjustable(run_dir):
    strengths = rf.read_square(run_dir, rf.EDGE_STRENGTHS)
    everything = learned_graph(run_dir, threshold=0.0)
    assert everything.number_of_edges() == int((strengths.to_numpy() > 0).sum())
    middle = 0.5
    some = learned_graph(run_dir, threshold=middle)
    expected = {(p, c) for p in strengths.index for c in strengths.columns if strengths.at[p, c] > middle}
    assert set(some.edges) == expected
    assert some.graph["threshold"] == middle and some.graph["threshold_kind"] == "absolute"
    assert learned_graph(run_dir, threshold=10.0).number_of_edges() == 0
    assert strength_range(run_dir)[1] == pytest.approx(strengths.to_numpy().max())


def test_support_given_by_a_group_is_used_and_missing_edges_get_zero(run_dir):
    support = {("sleep:1", "retina:1"): 0.5}
    graph = learned_graph(run_dir, support=support)
    assert graph.edges["sleep:1", "retina:1"]["support"] == 0.5
    assert graph.edges["sleep:2", "retina:2"]["support"] == 0.0


def test_filters(run_dir):
    graph = learned_graph(run_dir, threshold=0.0)
    cross = filter_graph(graph, GraphFilter(cross_modal_only=True))
    assert cross.number_of_edges() > 0 and all(a["cross_modal"] for *_, a in cross.edges(data=True))
    sleep_only = filter_graph(graph, GraphFilter(modalities=("sleep",)))
    assert set(sleep_only.nodes) == {"sleep:1", "sleep:2", "sleep:3"}
    strong = filter_graph(graph, GraphFilter(min_weight=0.5))
    assert all(a["weight"] >= 0.5 for *_, a in strong.edges(data=True))
    nx.set_edge_attributes(graph, {("sleep:1", "retina:1"): 0.3}, "support")
    supported = filter_graph(graph, GraphFilter(min_support=0.5))
    assert ("sleep:1", "retina:1") not in supported.edges and supported.number_of_edges() == graph.number_of_edges() - 1
    assert supported.graph == graph.graph


def test_node_summary_lists_parents_and_children(run_dir):
    graph = learned_graph(run_dir)
    summary = node_summary(graph, "sleep:1")
    assert {row["node"] for row in summary["children"]} == {"sleep:3", "retina:1"}
    assert summary["parents"] == []
    assert {row["node"] for row in node_summary(graph, "retina:1")["parents"]} == {"sleep:1"}
    with pytest.raises(UserInputError):
        node_summary(graph, "nope:1")


def test_a_staged_folder_without_run_id_is_named_after_its_final_name(tmp_path):
    run_dir = make_run_folder(tmp_path / ".my-run.partial-1a2b3c4d")
    manifest = rf.read_manifest(run_dir)
    manifest["run_id"] = None
    manifest["spec"]["run_id"] = None
    rf.write_json(run_dir / rf.MANIFEST, manifest)
    assert load_run_info(run_dir).run_id == "my-run"


def test_not_a_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="manifest.json"):
        load_run_info(tmp_path)


def test_modality_order_comes_from_causal_order(tmp_path):
    run_dir = make_run_folder(tmp_path / "run")
    manifest = rf.read_manifest(run_dir)
    manifest["spec"]["model"]["causal_order"] = ["retina", "sleep"]
    rf.write_json(run_dir / rf.MANIFEST, manifest)
    info = load_run_info(run_dir)
    assert info.modality_order == ["retina", "sleep"]
    assert info.latents[:2] == ["retina:1", "retina:2"]


def test_write_all_formats_writes_the_run_folder_graph_files(run_dir):
    written = write_all_formats(run_dir)
    assert sorted(p.name for p in written) == sorted(rf.GRAPH_FILES.values())
    assert set(nx.read_graphml(run_dir / "graph.graphml").edges) == set(learned_graph(run_dir).edges)
    assert json.loads((run_dir / "graph.json").read_text(encoding="utf-8"))["graph"]["run_id"] == "run-hostile"


def test_export_command(run_dir, tmp_path, capsys):
    out = tmp_path / "exports" / "g.graphml"
    assert cli_main(["export", str(run_dir), "--format", "graphml", "--out", str(out)]) == 0
    assert set(nx.read_graphml(out).edges) == set(learned_graph(run_dir).edges)
    csv_out = tmp_path / "exports" / "edges.csv"
    assert cli_main(["export", str(run_dir), "--format", "csv", "--out", str(csv_out), "--threshold", "0"]) == 0
    assert len(pd.read_csv(csv_out)) == learned_graph(run_dir, threshold=0.0).number_of_edges()
    assert (tmp_path / "exports" / "edges_adjacency.csv").is_file()


@pytest.mark.slow
def test_export_command_pc_with_phenotypes(run_dir, tmp_path):
    out = tmp_path / "pc.json"
    code = cli_main(["export", str(run_dir), "--format", "json", "--out", str(out), "--readout", "pc",
                     "--phenotypes", str(run_dir / "phenotypes.csv")])
    assert code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["graph"]["readout"].startswith("PC (fisherz")
    assert {"age", "sex"} <= {n["id"] for n in data["nodes"]}


def test_export_command_bad_input_exits_2(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "missing"), "--format", "dot", "--out", str(tmp_path / "x.dot")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path), "--format", "dot", "--out", str(tmp_path / "x.dot")]) == 2


def test_finished_runs_lists_run_folders_of_the_workspace(workspace):
    make_run_folder(workspace.models_dir / "run-a", run_id="run-a", group_id="g")
    (workspace.models_dir / ".run-b.partial-1234").mkdir()
    runs = finished_runs(workspace)
    assert [r["run_id"] for r in runs] == ["run-a"]
    assert runs[0]["group_id"] == "g"


@pytest.mark.slow
def test_a_real_tiny_run(tmp_path):
    """`python -m mmcrl_core train` writes a run folder whose graph files come from write_all_formats."""
    assert cli_main(["simulate", "--setting", "tiny", "--n", "300", "--seed", "1", "--out", str(tmp_path / "sim")]) == 0
    sources = sorted(str(p) for p in (tmp_path / "sim").glob("*.csv"))
    run_dir = tmp_path / "run"
    code = cli_main(["train", *sources, "--out", str(run_dir), "--epochs", "2", "--threads", "1",
                     "--no-progress", "--run-id", "tiny-run"])
    assert code == 0
    graph = learned_graph(run_dir)
    edges = rf.read_edges(run_dir)
    assert set(graph.edges) == set(zip(edges.source, edges.target))
    assert graph.graph["run_id"] == "tiny-run" and graph.graph["threshold_kind"] == "absolute"
    assert graph.graph["threshold"] == pytest.approx(rf.read_manifest(run_dir)["spec"]["model"]["edge_threshold"])
    written = nx.read_graphml(run_dir / rf.GRAPH_FILES["graphml"])
    assert set(written.edges) == set(graph.edges) and written.graph["run_id"] == "tiny-run"
    assert all(graph.nodes[s]["tier"] <= graph.nodes[t]["tier"] for s, t in graph.edges)
