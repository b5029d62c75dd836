"""A run's causal graph as a networkx DiGraph with attributes, the filters the explorer applies, and
the `export` command.

Two read-outs (METHOD 3): the learned adjacency of the run (its own selection rule, or any
threshold on the learned edge strengths) and PC over the latents plus chosen phenotypes
(pc_readout.py). Both give the same graph object model:

  graph attributes  provenance: run_id, dataset, seed, config_hash, readout, threshold,
                    adjacency_convention, mmcrl_version (+ alpha, test for PC)
  node attributes   modality, kind ("latent" | "phenotype"), label, description, tier
  edge attributes   weight, cross_modal, support, method, orientation
                    ("directed" | "undirected": PC may leave an edge unoriented)

Edges always point parent -> child. Exports live in graph_export.py.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pandas as pd

from . import __version__
from . import runfolder as rf
from .config import parse_latent_name
from .errors import UserInputError

ADJACENCY_CONVENTION = "edge source -> target means source is a parent (cause) of target; adjacency index = parent, columns = child"
PHENOTYPE_MODALITY = "phenotype"
LATENT = "latent"
PHENOTYPE = "phenotype"


@dataclass(frozen=True)
class RunInfo:
    """What the graph needs to know about a run folder."""

    run_dir: Path
    run_id: str
    dataset: str
    seed: int | str
    config_hash: str
    modality_order: list[str]
    latents: list[str]
    labels: dict = field(default_factory=dict)
    readout_rule: str = ""
    readout_threshold: float | None = None
    readout_kind: str = "absolute"  # "relative": threshold x the strongest edge (runs before edge_threshold)
    group_id: str = ""

    def absolute_threshold(self, strongest: float) -> float | None:
        """The run's own threshold on the strength scale (for a slider's starting point)."""
        if self.readout_threshold is None:
            return None
        return self.readout_threshold * strongest if self.readout_kind == "relative" else self.readout_threshold


def _modality_order(spec: dict, latents: list[str]) -> list[str]:
    listed = [m.get("name") for m in spec.get("modalities", []) if m.get("name")]
    order = (spec.get("model") or {}).get("causal_order") or listed
    seen = [m for m in order if m in listed] if listed else list(order)
    for name in listed + [parse_latent_name(lat)[0] for lat in latents]:
        if name not in seen:
            seen.append(name)
    return seen


def _folder_run_id(run_dir: Path) -> str:
    # run_writer calls us on its staging folder ".<name>.partial-<hex>": name the run, not the folder
    staged = re.fullmatch(r"\.(.+)\.partial-[0-9a-f]+", run_dir.name)
    return staged.group(1) if staged else run_dir.name


def load_run_info(run_dir: Path | str) -> RunInfo:
    run_dir = Path(run_dir)
    manifest = rf.read_manifest(run_dir)
    spec = manifest.get("spec") or {}
    source = rf.EDGE_STRENGTHS if (run_dir / rf.EDGE_STRENGTHS).is_file() else rf.ADJACENCY
    if not (run_dir / source).is_file():
        raise UserInputError(f"{run_dir} has neither {rf.EDGE_STRENGTHS} nor {rf.ADJACENCY}: is the run finished?")
    square = rf.read_square(run_dir, source)
    latents = list(dict.fromkeys([str(c) for c in square.index] + [str(c) for c in square.columns]))
    order = _modality_order(spec, latents)
    tier = {m: i for i, m in enumerate(order)}
    latents.sort(key=lambda name: (tier.get(parse_latent_name(name)[0], len(tier)), parse_latent_name(name)[1]))
    readout = manifest.get("graph_readout") or {}
    threshold = readout.get("threshold")
    return RunInfo(
        run_dir=run_dir,
        run_id=str(manifest.get("run_id") or spec.get("run_id") or _folder_run_id(run_dir)),
        dataset=str(manifest.get("dataset_id") or spec.get("dataset_id") or ""),
        seed=manifest.get("seed", (spec.get("train") or {}).get("seed", "")),
        config_hash=str(manifest.get("config_hash") or ""),
        modality_order=order,
        latents=latents,
        labels=rf.read_labels(run_dir),
        readout_rule=str(readout.get("rule") or ""),
        readout_threshold=float(threshold) if threshold is not None else None,
        readout_kind=str(readout.get("kind") or "absolute"),
        group_id=str(manifest.get("group_id") or spec.get("group_id") or ""),
    )


def provenance(info: RunInfo, readout: str, threshold: float | None, threshold_kind: str = "absolute",
               **extra) -> dict:
    """Graph attributes every export carries. Only str / int / float, so every format keeps them."""
    attrs = {
        "run_id": info.run_id,
        "dataset": info.dataset,
        "seed": info.seed if isinstance(info.seed, int) else str(info.seed),
        "config_hash": info.config_hash,
        "readout": readout,
        "threshold": float(threshold) if threshold is not None else "",
        "threshold_kind": threshold_kind if threshold is not None else "",
        "adjacency_convention": ADJACENCY_CONVENTION,
        "mmcrl_version": __version__,
    }
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def add_latent_nodes(graph: nx.DiGraph, info: RunInfo, stability: dict[str, float] | None = None) -> None:
    tier = {m: i for i, m in enumerate(info.modality_order)}
    for name in info.latents:
        modality, _ = parse_latent_name(name)
        user = info.labels.get(name) or {}
        attrs = {
            "modality": modality,
            "kind": LATENT,
            "label": str(user.get("label") or name),
            "description": str(user.get("description") or ""),
            "tier": tier.get(modality, len(tier)),
        }
        if stability is not None and name in stability:
            attrs["stability"] = float(stability[name])
        graph.add_node(name, **attrs)


def _edge_support_from_file(run_dir: Path) -> dict[tuple[str, str], float]:
    if not (run_dir / rf.EDGES).is_file():
        return {}
    edges = rf.read_edges(run_dir)
    if "support" not in edges.columns:
        return {}
    return {
        (str(row.source), str(row.target)): float(row.support)
        for row in edges.itertuples(index=False)
        if pd.notna(row.support)
    }


def is_cross_modal(source: str, target: str, graph: nx.DiGraph) -> bool:
    return graph.nodes[source].get("modality") != graph.nodes[target].get("modality")


def learned_graph(
    run_dir: Path | str,
    threshold: float | None = None,
    support: dict[tuple[str, str], float] | None = None,
    stability: dict[str, float] | None = None,
) -> nx.DiGraph:
    """The learned adjacency as a graph.

    threshold None: the edges the run selected (adjacency.csv, the rule fixed before training).
    Otherwise: every edge whose |learned strength| exceeds `threshold`.
    support: share of runs with each edge (stability.py); default the run's edges.csv, else 1.0
    (one run, one vote).
    """
    info = load_run_info(run_dir)
    run_dir = info.run_dir
    has_strengths = (run_dir / rf.EDGE_STRENGTHS).is_file()
    if threshold is None:
        if not (run_dir / rf.ADJACENCY).is_file():
            raise UserInputError(f"{run_dir} has no {rf.ADJACENCY}; give a threshold on the edge strengths")
        selected = rf.read_square(run_dir, rf.ADJACENCY)
        weights = rf.read_square(run_dir, rf.EDGE_STRENGTHS) if has_strengths else selected
        readout = f"learned adjacency ({info.readout_rule})" if info.readout_rule else "learned adjacency"
        shown_threshold, threshold_kind = info.readout_threshold, info.readout_kind
        keep = selected.fillna(0).abs() > 0
    else:
        weights = rf.read_square(run_dir, rf.EDGE_STRENGTHS if has_strengths else rf.ADJACENCY)
        readout = "learned adjacency (threshold on edge strength)"
        shown_threshold, threshold_kind = float(threshold), "absolute"
        keep = weights.fillna(0).abs() > threshold
    weights = weights.reindex(index=keep.index, columns=keep.columns)
    # Support given by a group of runs: an edge none of them had gets 0. From this run's own
    # edges.csv: an edge it did not list (another threshold) still has this run's one vote.
    missing_support = 0.0 if support is not None else 1.0
    support = support if support is not None else _edge_support_from_file(run_dir)

    graph = nx.DiGraph(**provenance(info, readout, shown_threshold, threshold_kind))
    add_latent_nodes(graph, info, stability)
    for parent in keep.index:
        for child in keep.columns:
            if parent == child or not bool(keep.at[parent, child]):
                continue
            weight = float(weights.at[parent, child])
            if not math.isfinite(weight):
                continue
            source, target = str(parent), str(child)
            graph.add_edge(
                source,
                target,
                weight=weight,
                cross_modal=is_cross_modal(source, target, graph),
                support=float(support.get((source, target), missing_support)),
                method="adjacency",
                orientation="directed",
            )
    return graph


def strength_range(run_dir: Path | str) -> tuple[float, float]:
    """(0, largest |learned strength|): the range of a threshold slider."""
    run_dir = Path(run_dir)
    name = rf.EDGE_STRENGTHS if (run_dir / rf.EDGE_STRENGTHS).is_file() else rf.ADJACENCY
    values = rf.read_square(run_dir, name).abs().to_numpy()
    finite = values[pd.notna(values)]
    return 0.0, float(finite.max()) if finite.size else 0.0


@dataclass(frozen=True)
class GraphFilter:
    """What the explorer shows; defaults show everything."""

    min_weight: float = 0.0
    min_support: float = 0.0
    modalities: tuple[str, ...] | None = None
    cross_modal_only: bool = False
    show_phenotypes: bool = True


def filter_graph(graph: nx.DiGraph, spec: GraphFilter) -> nx.DiGraph:
    """A copy keeping the nodes and edges the filter lets through (graph attributes kept)."""

    def node_ok(attrs: dict) -> bool:
        if attrs.get("kind") == PHENOTYPE:
            return spec.show_phenotypes
        return spec.modalities is None or attrs.get("modality") in spec.modalities

    kept = nx.DiGraph(**graph.graph)
    kept.add_nodes_from((n, a) for n, a in graph.nodes(data=True) if node_ok(a))
    for source, target, attrs in graph.edges(data=True):
        if source not in kept or target not in kept:
            continue
        if abs(float(attrs.get("weight", 0.0))) < spec.min_weight:
            continue
        if float(attrs.get("support", 1.0)) < spec.min_support:
            continue
        if spec.cross_modal_only and not attrs.get("cross_modal"):
            continue
        kept.add_edge(source, target, **attrs)
    return kept


def node_summary(graph: nx.DiGraph, node: str) -> dict:
    """What the node inspector shows: attributes, parents and children with edge attributes."""
    if node not in graph:
        raise UserInputError(f"{node!r} is not a node of this graph")

    def rows(pairs):
        return [
            {
                "node": other,
                "label": graph.nodes[other].get("label", other),
                "weight": attrs.get("weight"),
                "support": attrs.get("support"),
                "orientation": attrs.get("orientation", "directed"),
            }
            for other, attrs in pairs
        ]

    parents = [(s, a) for s, _, a in graph.in_edges(node, data=True)]
    children = [(t, a) for _, t, a in graph.out_edges(node, data=True)]
    return {"node": node, **graph.nodes[node], "parents": rows(parents), "children": rows(children)}


def write_all_formats(run_dir: Path | str, graph: nx.DiGraph | None = None) -> list[Path]:
    """Write graph.graphml / .gexf / .dot / .json / .cyjs into a run folder (the run writer calls
    this on the staging folder); returns the paths written."""
    from .graph_export import export_graph

    run_dir = Path(run_dir)
    graph = graph if graph is not None else learned_graph(run_dir)
    written: list[Path] = []
    for fmt, name in rf.GRAPH_FILES.items():
        written += export_graph(graph, fmt, run_dir / name)
    return written


# ---------------------------------------------------------------------------------------- CLI


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    from .graph_export import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export a run's causal graph (GraphML, GEXF, DOT, JSON, Cytoscape, CSV, HTML)",
        description="Export a run's causal graph with provenance. csv writes FILE (edges) and "
        "FILE's stem + '_adjacency.csv' (index = parent, columns = child).",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--format", required=True, choices=list(FORMATS), dest="fmt")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE")
    parser.add_argument(
        "--readout", choices=["adjacency", "pc"], default="adjacency",
        help="learned adjacency (default) or PC over the latents (+ --phenotypes)",
    )
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep edges with |strength| above this (default: the run's own rule)")
    parser.add_argument("--phenotypes", type=Path, default=None,
                        help="PC only: CSV with the subject id column first, then phenotype columns")
    parser.add_argument("--test", choices=["fisherz", "kci"], default="fisherz", help="PC independence test")
    parser.add_argument("--alpha", type=float, default=0.1, help="PC significance level")
    parser.set_defaults(handler=_export_command)


def _export_command(args: argparse.Namespace) -> int:
    from .graph_export import export_graph

    if not args.run_dir.is_dir():
        raise UserInputError(f"run folder {args.run_dir} does not exist")
    if args.readout == "pc":
        from .pc_readout import pc_graph_from_run, read_phenotypes_csv

        phenotypes = read_phenotypes_csv(args.phenotypes) if args.phenotypes else None
        graph = pc_graph_from_run(args.run_dir, phenotypes, test=args.test, alpha=args.alpha)
    else:
        graph = learned_graph(args.run_dir, threshold=args.threshold)
    for path in export_graph(graph, args.fmt, args.out):
        print(path)
    return 0


# ------------------------------------------------------------------------ runs for the explorer


def finished_runs(paths=None) -> list[dict]:
    """Run folders the explorer can open: registered succeeded runs (run_store), then any other
    folder under models/ holding a manifest.json. Each: run_id, name, out_dir, group_id, dataset_id."""
    from .workspace import default_paths

    paths = paths or default_paths()
    runs: dict[str, dict] = {}
    try:
        from . import run_store

        for record in run_store.list_runs(paths, statuses=["succeeded"]):
            if (Path(record.out_dir) / rf.MANIFEST).is_file():
                runs[record.id] = {"run_id": record.id, "name": record.name or record.id,
                                   "out_dir": Path(record.out_dir), "group_id": record.group_id or "",
                                   "dataset_id": record.dataset_id or ""}
    except ImportError:
        pass
    if paths.models_dir.is_dir():
        for folder in sorted(paths.models_dir.iterdir()):
            if folder.name.startswith(".") or not (folder / rf.MANIFEST).is_file():
                continue
            try:
                manifest = rf.read_manifest(folder)
            except ValueError:
                continue
            run_id = str(manifest.get("run_id") or folder.name)
            spec = manifest.get("spec") or {}
            runs.setdefault(run_id, {
                "run_id": run_id, "name": str(spec.get("name") or run_id), "out_dir": folder,
                "group_id": str(manifest.get("group_id") or spec.get("group_id") or ""),
                "dataset_id": str(manifest.get("dataset_id") or spec.get("dataset_id") or ""),
            })
    return list(runs.values())


def top_phenotypes(run_dir: Path | str, phenotypes: pd.DataFrame, latent: str, top: int = 5) -> pd.DataFrame:
    """The phenotypes most associated with one latent (Spearman rho, BH q over this latent's tests)."""
    from .associations import association_table

    latents = rf.read_latents(Path(run_dir))
    latents.index = latents.index.astype(str)
    if latent not in latents.columns or phenotypes.empty:
        return pd.DataFrame(columns=["phenotype", "rho", "q", "n"])
    phenotypes = phenotypes.copy()
    phenotypes.index = phenotypes.index.astype(str)
    aligned = phenotypes.reindex(latents.index).astype(float)
    table = association_table(latents[[latent]].astype(float), aligned)
    table = table.reindex(table["rho"].abs().sort_values(ascending=False).index)
    return table[["phenotype", "rho", "q", "n"]].head(top).reset_index(drop=True)
