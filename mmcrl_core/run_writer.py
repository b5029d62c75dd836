"""Write a finished fit as the run folder of DESIGN.md (see runfolder.py for the file list).

Everything goes into a staging folder that is renamed into place only at the end, so a failed or
killed run leaves nothing at the destination.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import torch

from . import __version__
from . import runfolder as rf
from .config import RunSpec, parse_latent_name
from .train import FitResult

MODEL_FORMAT = 2  # 2: path-norm edge strengths (output-layer norms saved with the flow)


def package_versions() -> dict[str, str]:
    versions = {"mmcrl": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "pandas", "scikit-learn", "networkx"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
            text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _square(values: np.ndarray, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.Index(names, name="parent"), columns=names)


def edges_frame(result: FitResult) -> pd.DataFrame:
    names = result.latent_names
    cross = result.cross_modal
    rows = [
        {"source": names[j], "target": names[i], "weight": float(result.adjacency[j, i]),
         "cross_modal": bool(cross[j, i]), "support": 1.0}
        for j, i in zip(*np.nonzero(result.adjacency))
    ]
    return pd.DataFrame(rows, columns=rf.EDGE_COLUMNS)


def model_layout(result: FitResult) -> list[dict]:
    """Enough to rebuild the network before loading model.pt (see infer.load_run)."""
    return [
        {"name": lay.name, "input_dim": lay.input_dim, "latents": lay.latents, "nuisance": lay.nuisance}
        for lay in result.layouts
    ]


def build_manifest(
    spec: RunSpec,
    result: FitResult,
    id_column: str,
    data_sha256: dict,
    extra: dict | None = None,
) -> dict:
    history = result.history
    finished = datetime.now(UTC)
    cross = result.cross_modal
    manifest = {
        "run_id": spec.run_id,
        "name": spec.name,
        "status": "succeeded",
        "dataset_id": spec.dataset_id,
        "group_id": spec.group_id,
        "config_hash": spec.config_hash(),
        "seed": spec.train.seed,
        "spec": json.loads(spec.model_dump_json()),
        "modalities": [json.loads(m.model_dump_json()) for m in spec.modalities],
        "modality_order": spec.modality_order(),
        "latent_names": result.latent_names,
        "model_layout": model_layout(result),
        "model_format": MODEL_FORMAT,
        "id_column": id_column,
        "n_subjects": int(result.latents.shape[0]),
        "n_train": int(len(result.train_index)),
        "n_val": int(len(result.val_index)),
        "data_sha256": data_sha256,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": result.device,
        "timings": {
            "finished_at": finished.isoformat(timespec="seconds"),
            "fit_seconds": round(result.seconds, 3),
            "epochs_run": int(len(history)),
            "seconds_per_epoch": float(history["seconds"].mean()) if len(history) else None,
        },
        "metrics": {
            "best_val_loss": result.best_val_loss,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "final_train_loss": float(history["train_loss"].iloc[-1]) if len(history) else None,
            "refit_nll": result.readout.get("refit_nll"),
            "cross_modal_edges": int(((result.adjacency != 0) & cross).sum()),
            "within_modality_edges": int(((result.adjacency != 0) & ~cross).sum()),
        },
        "graph_readout": {
            "rule": result.readout.get("rule", ""),
            "threshold": result.readout.get("threshold"),
            "kind": result.readout.get("kind", "absolute"),
        },
    }
    if extra:
        manifest.update(extra)
    return manifest


def _write_graph_files(run_dir: Path) -> None:
    try:
        from .graph import write_all_formats
    except ImportError:
        write_all_formats = None
    if write_all_formats is not None:
        write_all_formats(run_dir)
        return
    _write_graph_files_networkx(run_dir)


def _write_graph_files_networkx(run_dir: Path) -> None:
    """Fallback when graph.py is not there: the same five files straight from networkx."""
    strengths = rf.read_square(run_dir, rf.EDGE_STRENGTHS)
    edges = rf.read_edges(run_dir)
    graph = nx.DiGraph()
    for name in strengths.index:
        modality, _ = parse_latent_name(str(name))
        graph.add_node(str(name), modality=modality, kind="latent", label=str(name))
    for row in edges.itertuples(index=False):
        graph.add_edge(row.source, row.target, weight=float(row.weight), cross_modal=bool(row.cross_modal),
                       support=float(row.support))
    nx.write_graphml(graph, run_dir / rf.GRAPH_FILES["graphml"])
    nx.write_gexf(graph, run_dir / rf.GRAPH_FILES["gexf"])
    nx.nx_pydot.write_dot(graph, run_dir / rf.GRAPH_FILES["dot"])
    rf.write_json(run_dir / rf.GRAPH_FILES["json"], nx.node_link_data(graph, edges="links"))
    rf.write_json(run_dir / rf.GRAPH_FILES["cytoscape"], nx.cytoscape_data(graph))


def write_run(
    out_dir: str | Path,
    spec: RunSpec,
    result: FitResult,
    ids: np.ndarray | list,
    id_column: str,
    preprocessing: dict,
    data_sha256: dict,
    extra_manifest: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write every file of the run folder at once; returns the folder."""
    out = Path(out_dir)
    names = result.latent_names
    with rf.staged_run_folder(out, overwrite=overwrite) as stage:
        torch.save(result.model.state_dict(), stage / rf.MODEL)
        rf.write_json(stage / rf.PREPROCESSING, preprocessing)
        latents = pd.DataFrame(result.latents, columns=names)
        latents.insert(0, id_column, np.asarray(ids))
        latents.to_csv(stage / rf.LATENTS, index=False, float_format="%.7g")
        _square(result.edge_strengths, names).to_csv(stage / rf.EDGE_STRENGTHS, float_format="%.7g")
        _square(result.adjacency, names).to_csv(stage / rf.ADJACENCY, float_format="%.7g")
        edges_frame(result).to_csv(stage / rf.EDGES, index=False, float_format="%.7g")
        result.history.to_csv(stage / rf.HISTORY, index=False, float_format="%.7g")
        # the manifest last but one: graph.py reads it (and the squares) to build the graph
        rf.write_json(stage / rf.MANIFEST, build_manifest(spec, result, id_column, data_sha256, extra_manifest))
        _write_graph_files(stage)
    return out
