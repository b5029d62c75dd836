"""Reading runs side by side: training curves, configuration differences, the run folder as a zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

from .run_store import RunRecord, curve_names, progress
from .runfolder import HISTORY
from .workspace import WorkspacePaths


def run_history(run: RunRecord, paths: WorkspacePaths | None = None) -> pd.DataFrame:
    """One row per epoch: history.csv of a finished run, else the live progress events."""
    path = Path(run.out_dir) / HISTORY
    if path.is_file():
        frame = pd.read_csv(path)
        if "epoch" in frame.columns and len(frame):
            return frame
    events = progress(run.id, paths)
    if not events:
        return pd.DataFrame(columns=["epoch"])
    return pd.DataFrame(events)


def loss_columns(history: pd.DataFrame) -> list[str]:
    """Columns of a history worth plotting: losses and each loss term, train/val first."""
    names = curve_names(history.to_dict("records")) if len(history) else []
    first = [c for c in ("train_loss", "val_loss") if c in names]
    return first + [c for c in names if c not in first]


# Names a researcher reads in legends instead of the history.csv column names.
CURVE_LABELS = {
    "train_loss": "training loss", "val_loss": "validation loss", "rec": "reconstruction term",
    "kl": "KL (independence) term", "sparsity": "sparsity term",
}


def curve_label(name: str) -> str:
    return CURVE_LABELS.get(name, name.replace("_", " "))


def long_curves(runs: list[RunRecord], paths: WorkspacePaths | None = None) -> pd.DataFrame:
    """epoch, run, curve, value for every run: ready for an overlaid line plot."""
    frames = []
    for run in runs:
        history = run_history(run, paths)
        columns = loss_columns(history)
        if not columns:
            continue
        frame = history.melt(id_vars="epoch", value_vars=columns, var_name="curve", value_name="value")
        frames.append(frame.assign(run=run.label))
    if not frames:
        return pd.DataFrame(columns=["epoch", "curve", "value", "run"])
    return pd.concat(frames, ignore_index=True).dropna(subset=["value"])


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested spec -> {'train.seed': 0, 'modalities.sleep.latents': 3, ...}."""
    flat: dict = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if key == "modalities" and isinstance(value, list):
            for modality in value:
                label = modality.get("name", "?")
                flat.update(flatten({k: v for k, v in modality.items() if k != "name"}, f"{name}.{label}."))
        elif isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = ", ".join(str(v.get("path", v)) if isinstance(v, dict) else str(v) for v in value)
        else:
            flat[name] = value
    return flat


NOT_SET = "(not set)"  # a setting an older run's configuration does not have


def config_differences(runs: list[RunRecord]) -> pd.DataFrame:
    """Settings that differ between the runs (rows) with each run's value (columns)."""
    skip = {"run_id", "name", "group_id"}
    flats = {run.label: flatten({k: v for k, v in run.spec.items() if k not in skip}) for run in runs}
    keys = sorted({k for flat in flats.values() for k in flat})
    rows = {
        key: {label: flat[key] if key in flat else NOT_SET for label, flat in flats.items()}
        for key in keys
        if len({repr(flat.get(key)) for flat in flats.values()}) > 1
    }
    # object dtype: a column mixing numbers and gaps must not turn 300 into 300.0
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(flats), dtype=object).rename_axis("setting")


def zip_run_folder(run: RunRecord) -> bytes:
    """The run folder as zip bytes (files under <run_id>/ inside the archive)."""
    folder = Path(run.out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(run.id) / path.relative_to(folder))
    return buffer.getvalue()
