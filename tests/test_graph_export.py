"""Every export format, read back with networkx / pydot / pandas, carries the same nodes, edges,
attributes and provenance as the run's edges.csv, with hostile labels intact (escaped in HTML)."""

from __future__ import annotations

import html
import json
import re

import networkx as nx
import pandas as pd
import pytest
from graph_run_fixture import HOSTILE, HOSTILE_DATASET, LATENTS, make_run_folder

from mmcrl_core import runfolder as rf
from mmcrl_core.errors import UserInputError
from mmcrl_core.graph import learned_graph
from mmcrl_core.graph_export import (
    FORMATS,
    adjacency_frame,
    export_bytes,
    export_graph,
    read_cytoscape,
    read_dot,
    read_gexf_provenance,
)
from mmcrl_core.graph_html import REMOTE_REFERENCE, STATIC_LAYOUT_NODES, graph_html, read_html_graph, vis_data
from mmcrl_core.pc_readout import pc_graph_from_run, read_phenotypes_csv

PROVENANCE_KEYS = ["run_id", "dataset", "seed", "config_hash", "readout", "threshold", "threshold_kind",
                   "adjacency_convention"]
RAW_SCRIPT = "<script>alert(1)</script>"


def as_bool(value) -> bool:
    return value is True or str(value).strip().lower() == "true"


def read_back(path, fmt):
    """(graph attributes, {node: attrs}, {(source, target): attrs}) as the format's reader sees them."""
    if fmt == "graphml":
        g = nx.read_graphml(path)
        return g.graph, dict(g.nodes(data=True)), {(s, t): a for s, t, a in g.edges(data=True)}
    if fmt == "gexf":
        g = nx.read_gexf(path)
        return read_gexf_provenance(path), dict(g.nodes(data=True)), {(s, t): a for s, t, a in g.edges(data=True)}
    if fmt == "dot":
        g = read_dot(path)
        return g.graph, dict(g.nodes(data=True)), {(s, t): a for s, t, a in g.edges(data=True)}
    if fmt == "json":
        g = nx.node_link_graph(json.loads(path.read_text(encoding="utf-8")), edges="edges")
        return g.graph, dict(g.nodes(data=True)), {(s, t): a for s, t, a in g.edges(data=True)}
    if fmt == "cytoscape":
        g = read_cytoscape(path)
        return g.graph, dict(g.nodes(data=True)), {(s, t): a for s, t, a in g.edges(data=True)}
    if fmt == "csv":
        edges = pd.read_csv(path, keep_default_na=False)
        adjacency = pd.read_csv(path.with_name(f"{path.stem}_adjacency.csv"), index_col=0)
        provenance = json.loads(path.with_name(f"{path.stem}_provenance.json").read_text(encoding="utf-8"))
        labels = dict(zip(edges.source, edges.source_label)) | dict(zip(edges.target, edges.target_label))
        nodes = {n: ({"label": labels[n]} if n in labels else {}) for n in adjacency.index}
        return provenance, nodes, {(r["source"], r["target"]): r for r in edges.to_dict("records")}
    if fmt == "html":
        data = read_html_graph(path.read_text(encoding="utf-8"))
        graph_attrs = {html.unescape(k): html.unescape(v) for k, v in data["graph"].items()}
        nodes = {html.unescape(n["id"]): {"label": html.unescape(n["mmcrl_label"])} for n in data["nodes"]}
        edges = {
            (html.unescape(e["from"]), html.unescape(e["to"])): {
                "weight": e["weight"], "support": e["support"], "cross_modal": e["cross_modal"],
                "method": html.unescape(e["method"]),
            }
            for e in data["edges"]
        }
        return graph_attrs, nodes, edges
    raise AssertionError(fmt)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_folder(tmp_path_factory.mktemp("export") / "run")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_reads_back_like_edges_csv(run_dir, tmp_path, fmt):
    graph = learned_graph(run_dir)
    out = tmp_path / f"graph{FORMATS[fmt]}"
    written = export_graph(graph, fmt, out)
    assert out in written and out.is_file()
    graph_attrs, nodes, edges = read_back(out, fmt)

    expected = rf.read_edges(run_dir)
    assert set(edges) == set(zip(expected.source, expected.target))
    for row in expected.itertuples(index=False):
        got = edges[(row.source, row.target)]
        assert float(got["weight"]) == pytest.approx(row.weight)
        assert float(got["support"]) == pytest.approx(row.support)
        assert as_bool(got["cross_modal"]) == bool(row.cross_modal)
    assert set(nodes) == set(LATENTS)
    assert nodes["sleep:1"]["label"] == HOSTILE
    assert nodes["retina:1"]["label"] == "Rétine ‘vessels’ & <i>"
    for key in PROVENANCE_KEYS:
        assert str(graph_attrs[key]) == str(graph.graph[key]), key
    assert graph_attrs["dataset"] == HOSTILE_DATASET


@pytest.mark.parametrize("fmt", ["graphml", "gexf", "json", "cytoscape", "dot"])
def test_node_attributes_survive(run_dir, tmp_path, fmt):
    graph = learned_graph(run_dir)
    out = tmp_path / f"g{FORMATS[fmt]}"
    export_graph(graph, fmt, out)
    _, nodes, edges = read_back(out, fmt)
    for node, attrs in graph.nodes(data=True):
        for key in ("modality", "kind", "description"):
            assert str(nodes[node].get(key, "")) == str(attrs[key]), (node, key)
    for attrs in edges.values():
        assert attrs["method"] == "adjacency" and attrs["orientation"] == "directed"


def test_adjacency_csv_is_parent_by_child(run_dir):
    graph = learned_graph(run_dir)
    frame = adjacency_frame(graph)
    for source, target, attrs in graph.edges(data=True):
        assert frame.at[source, target] == pytest.approx(attrs["weight"])
        assert frame.at[target, source] == 0.0
    assert frame.to_numpy().astype(bool).sum() == graph.number_of_edges()


def test_html_escapes_every_user_string_and_loads_nothing_remote(run_dir):
    graph = learned_graph(run_dir)
    page = graph_html(graph)
    assert RAW_SCRIPT not in page
    assert "<img src=x" not in page and HOSTILE_DATASET not in page
    data = read_html_graph(page)
    sleep = next(n for n in data["nodes"] if n["id"] == "sleep:1")
    assert sleep["mmcrl_label"] == html.escape(HOSTILE)
    assert sleep["label"] == html.escape(f"{HOSTILE}\n(sleep:1)")
    assert "&lt;script&gt;" in sleep["title"] and "<script" not in sleep["title"]
    assert html.escape(HOSTILE_DATASET) in page  # the provenance block
    assert not REMOTE_REFERENCE.search(page)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", page, re.IGNORECASE)
    assert "default-src 'none'" in page  # the page itself forbids network requests


def test_html_of_pc_graph_with_hostile_phenotype_names(run_dir):
    phenotypes = read_phenotypes_csv(run_dir / "phenotypes.csv")
    phenotypes = phenotypes.rename(columns={"bmi <&>": "</script><script>alert(3)</script>"})
    graph = pc_graph_from_run(run_dir, phenotypes)
    assert "</script><script>alert(3)</script>" in graph
    page = export_bytes(graph, "html")["graph.html"].decode("utf-8")
    assert "alert(3)</script>" not in page and RAW_SCRIPT not in page
    data = read_html_graph(page)
    ids = {html.unescape(n["id"]) for n in data["nodes"]}
    assert ids == set(graph.nodes)
    undirected = [e for e in data["edges"] if e["orientation"] == "undirected"]
    assert all(e["dashes"] and not e["arrows"] for e in undirected)
    # the DOT and GraphML of the same graph keep the hostile name as data
    dot = read_dot(export_bytes(graph, "dot")["graph.dot"].decode("utf-8"))
    assert set(dot.nodes) == set(graph.nodes)


def test_static_layout_places_modalities_in_columns(run_dir):
    data = read_html_graph(graph_html(learned_graph(run_dir), static_layout=True))
    assert data["static"] and data["options"]["physics"]["enabled"] is False
    x = {n["id"]: n["x"] for n in data["nodes"]}
    assert x["sleep:1"] == x["sleep:2"] < x["retina:1"] == x["retina:2"]


def test_large_graphs_get_a_static_layout_automatically():
    graph = nx.DiGraph()
    for k in range(STATIC_LAYOUT_NODES + 10):
        graph.add_node(f"m{k % 4}:{k}", modality=f"m{k % 4}", kind="latent", label=f"m{k % 4}:{k}", tier=k % 4)
    data = vis_data(graph)
    assert data["static"] and all("x" in n and "y" in n for n in data["nodes"])
    assert not vis_data(nx.DiGraph(graph.subgraph(list(graph)[:20])))["static"]


def test_csv_export_writes_edges_adjacency_and_provenance(run_dir, tmp_path):
    written = export_graph(learned_graph(run_dir), "csv", tmp_path / "my edges.csv")
    assert sorted(p.name for p in written) == ["my edges.csv", "my edges_adjacency.csv", "my edges_provenance.json"]


def test_unknown_format_and_folder_out_are_user_errors(run_dir, tmp_path):
    graph = learned_graph(run_dir)
    with pytest.raises(UserInputError, match="unknown export format"):
        export_bytes(graph, "pdf")
    with pytest.raises(UserInputError, match="folder"):
        export_graph(graph, "dot", tmp_path)
