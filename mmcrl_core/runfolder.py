"""The run folder contract of DESIGN.md: names of the files and how to read and write them.

A run folder is complete or absent: `staged_run_folder` writes into a hidden sibling and renames
it into place only when everything has been written, so a killed run leaves nothing at --out.

Files (all written by the train command; outside tools rely on these names):
  manifest.json        run id, status, full RunSpec, seed, modalities, data sha256, versions,
                       device, timings, metrics, graph read-out rule
  model.pt             state dict, loadable with torch.load(weights_only=True)
  preprocessing.json   fitted scaling / encodings per modality (applied again by `encode`)
  latents.csv          id column, then one column per latent named "<modality>:<k>"
  edge_strengths.csv   learned strength of every allowed edge (index = parent, columns = child)
  adjacency.csv        the selected graph: weight where an edge is kept, else 0 (same layout)
  edges.csv            source, target, weight, cross_modal, support
  history.csv          one row per epoch: epoch, train/val loss and each loss term
  graph.graphml, graph.gexf, graph.dot, graph.json (node-link), graph.cyjs (Cytoscape JSON)
  labels.json          optional, user labels and notes per latent (written by the latent browser)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import UserInputError

MANIFEST = "manifest.json"
MODEL = "model.pt"
PREPROCESSING = "preprocessing.json"
LATENTS = "latents.csv"
EDGE_STRENGTHS = "edge_strengths.csv"
ADJACENCY = "adjacency.csv"
EDGES = "edges.csv"
HISTORY = "history.csv"
LABELS = "labels.json"
GRAPH_FILES = {
    "graphml": "graph.graphml",
    "gexf": "graph.gexf",
    "dot": "graph.dot",
    "json": "graph.json",
    "cytoscape": "graph.cyjs",
}
EDGE_COLUMNS = ["source", "target", "weight", "cross_modal", "support"]


class RunFolderError(UserInputError):
    """The folder is not a complete mmcrl run folder (the user pointed at the wrong folder)."""


@contextmanager
def staged_run_folder(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to `out`; rename it to `out` only if the block succeeds."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str), encoding="utf-8")


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder: {MANIFEST} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def read_latents(run_dir: Path) -> pd.DataFrame:
    """Latents indexed by subject id (the index keeps the original id column name)."""
    frame = pd.read_csv(Path(run_dir) / LATENTS)
    return frame.set_index(frame.columns[0])


def read_square(run_dir: Path, name: str = ADJACENCY) -> pd.DataFrame:
    """adjacency.csv or edge_strengths.csv: index = parent (source), columns = child (target)."""
    return pd.read_csv(Path(run_dir) / name, index_col=0)


def read_edges(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / EDGES)


def read_labels(run_dir: Path) -> dict:
    path = Path(run_dir) / LABELS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
