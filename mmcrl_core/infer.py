"""Load a finished run and encode tables with it; the `encode` command.

The saved preprocessing is applied exactly as in training (same columns, means and sds), then the
encoders give posterior-mean latents named "<modality>:<k>". model.pt is a plain state dict loaded
with torch.load(weights_only=True): loading a run never unpickles code.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import runfolder as rf
from .config import RunSpec
from .errors import UserInputError
from .model import ModalityLayout, MultimodalCRL, build_model, split_missing

ENCODE_CHUNK = 8192


@dataclass
class LoadedRun:
    run_dir: Path
    manifest: dict
    spec: RunSpec
    model: MultimodalCRL
    preprocessing: dict
    latents: pd.DataFrame
    adjacency: pd.DataFrame
    edge_strengths: pd.DataFrame
    _preprocessor: object = field(default=None, repr=False)

    @property
    def latent_names(self) -> list[str]:
        return list(self.manifest.get("latent_names") or self.spec.latent_names())

    @property
    def nuisance(self) -> dict[str, int]:
        return {lay.name: lay.nuisance for lay in self.model.layouts}

    def _layout(self, modality: str) -> tuple[int, ModalityLayout]:
        for index, lay in enumerate(self.model.layouts):
            if lay.name == modality:
                return index, lay
        raise UserInputError(f"the run has no modality {modality!r}; it has {', '.join(self.model.names)}")

    def feature_names(self, modality: str) -> list[str]:
        self._layout(modality)
        return list(self.preprocessor_features()[modality])

    def preprocessor_features(self) -> dict[str, list[str]]:
        if self._preprocessor is not None:
            return self._preprocessor.feature_names
        return {m: list(info["columns"]) for m, info in self.preprocessing["modalities"].items()}

    def decoder(self, modality: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(z [n, k_m], eta [n, e_m]) -> reconstructed standardised features [n, d_m]."""
        index, _ = self._layout(modality)
        return self.model.decoders[index]

    def transform(self, tables: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Tables indexed by subject id -> (ids, standardised float32 arrays), as in training."""
        if self._preprocessor is not None:
            return self._preprocessor.transform(tables)
        return _simple_transform(self.preprocessing, tables)

    def encode_arrays(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Posterior-mean latents [n, K] (NaN for a modality a subject has no data for)."""
        n = len(next(iter(arrays.values())))
        out = []
        self.model.eval()
        with torch.no_grad():
            for start in range(0, n, ENCODE_CHUNK):
                xs, masks = [], []
                for lay in self.model.layouts:
                    x, m = split_missing(torch.from_numpy(np.asarray(arrays[lay.name][start : start + ENCODE_CHUNK],
                                                                     dtype=np.float32)))
                    xs.append(x)
                    masks.append(m)
                z = self.model.posterior_mean_latents(xs, masks)
                col = 0
                for lay, m in zip(self.model.layouts, masks):
                    z[m.sum(1) == 0, col : col + lay.latents] = float("nan")
                    col += lay.latents
                out.append(z.numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.total_latents), dtype=np.float32)

    def encode(self, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Latents of new subjects; tables are raw modality tables indexed by subject id."""
        ids, arrays = self.transform(tables)
        values = self.encode_arrays(arrays)
        index = pd.Index(ids, name=self.manifest.get("id_column") or "subject_id")
        return pd.DataFrame(values, index=index, columns=self.latent_names)

    def posterior_codes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Posterior means (z, eta) per modality on the training data, read again from the run's
        sources; raises FileNotFoundError when they have moved."""
        tables = _read_sources(self.spec, self.manifest.get("id_column"))
        _, arrays = self.transform(tables)
        codes = {}
        self.model.eval()
        with torch.no_grad():
            xs, masks = zip(*(split_missing(torch.from_numpy(arrays[lay.name])) for lay in self.model.layouts))
            for lay, (mean, _), m in zip(self.model.layouts, self.model.encode(list(xs), list(masks)), masks):
                keep = (m.sum(1) > 0).numpy()
                codes[lay.name] = (mean[keep, : lay.latents].numpy(), mean[keep, lay.latents :].numpy())
        return codes


def _simple_transform(preprocessing: dict, tables: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, dict]:
    """The internal loader's format: {"modalities": {m: {"columns", "mean", "std"}}}."""
    info = preprocessing["modalities"]
    present = [m for m in info if m in tables]
    if not present:
        raise UserInputError(f"none of the run's modalities ({', '.join(info)}) is in the data")
    ids = pd.Index(pd.unique(np.concatenate([tables[m].index.astype(str).to_numpy() for m in present])))
    arrays = {}
    for modality, item in info.items():
        columns = list(item["columns"])
        if modality not in tables:
            arrays[modality] = np.full((len(ids), len(columns)), np.nan, dtype=np.float32)
            continue
        frame = tables[modality]
        lacking = [c for c in columns if c not in frame.columns]
        if lacking:
            raise UserInputError(f"modality {modality!r} lacks column(s) {', '.join(lacking)}: give the same "
                                 "columns as the training data")
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        frame = frame[~frame.index.duplicated()].reindex(ids)
        values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        values[np.isinf(values)] = np.nan
        arrays[modality] = ((values - np.asarray(item["mean"])) / np.asarray(item["std"])).astype(np.float32)
    return ids.to_numpy(dtype=object), arrays


def _read_sources(spec: RunSpec, id_column: str | None) -> dict[str, pd.DataFrame]:
    from .train_cli import read_tables

    return read_tables(spec.sources, id_column)[0]


def load_run(run_dir: str | Path) -> LoadedRun:
    from .run_writer import MODEL_FORMAT

    run_dir = Path(run_dir)
    manifest = rf.read_manifest(run_dir)
    if manifest.get("status") not in (None, "succeeded"):
        raise UserInputError(f"run {run_dir} did not succeed (status {manifest.get('status')!r})")
    spec = RunSpec.model_validate(manifest["spec"])
    layouts = [ModalityLayout(**item) for item in manifest["model_layout"]]
    model = build_model(layouts, spec.model)
    state = torch.load(run_dir / rf.MODEL, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # the network changed shape since this run was saved: say so in the user's words
        raise UserInputError(
            f"run {manifest.get('run_id', run_dir.name)} was saved by an earlier version of mmcrl's model "
            f"(model format {manifest.get('model_format', 'unknown')}, this version reads {MODEL_FORMAT}); "
            "re-run it (Runs page, or the same train command) to use it here"
        ) from exc
    model.eval()
    preprocessing = json.loads((run_dir / rf.PREPROCESSING).read_text(encoding="utf-8"))
    preprocessor = None
    if "format_version" in preprocessing:  # written by preprocessing.Preprocessor
        from .preprocessing import Preprocessor

        preprocessor = Preprocessor.from_dict(preprocessing)
    return LoadedRun(
        run_dir=run_dir,
        manifest=manifest,
        spec=spec,
        model=model,
        preprocessing=preprocessing,
        latents=rf.read_latents(run_dir),
        adjacency=rf.read_square(run_dir, rf.ADJACENCY),
        edge_strengths=rf.read_square(run_dir, rf.EDGE_STRENGTHS),
        _preprocessor=preprocessor,
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="latents of (new) subjects with a trained run",
        description="Apply a run's saved preprocessing and encoders to tables; writes one row per subject.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("data", nargs="+", metavar="DATA", help="PATH (modality = file stem) or NAME=PATH")
    parser.add_argument("--out", required=True, metavar="FILE", help="CSV (or .parquet / .tsv) to write")
    parser.add_argument("--id-column", default=None, help="subject id column (default: the run's)")
    parser.set_defaults(handler=_encode_command)


def _encode_command(args: argparse.Namespace) -> int:
    from .train_cli import read_tables

    loaded = load_run(args.run_dir)
    id_column = args.id_column or loaded.manifest.get("id_column")
    tables, _, _ = read_tables(args.data, id_column)
    unknown = [m for m in tables if m not in loaded.model.names]
    if unknown:
        raise UserInputError(f"modality {', '.join(unknown)} is not in the run (it has {', '.join(loaded.model.names)}); "
                             "name each table NAME=PATH with the run's modality names")
    latents = loaded.encode(tables)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        latents.to_parquet(out)
    else:
        latents.to_csv(out, sep="\t" if out.suffix.lower() == ".tsv" else ",", float_format="%.7g")
    return 0
