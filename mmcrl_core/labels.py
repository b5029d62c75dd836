"""Names and notes for latents: generated descriptions the user can rename and annotate.

labels.json in the run folder holds {latent: {"label": str, "description": str, "notes": str}}.
The graph, the exports and the latent browser all show `display_name(latent, labels)`, so a latent
renamed once is renamed everywhere. A label equal to the latent's own name means "not renamed".
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from .errors import UserInputError
from .runfolder import LABELS, read_labels

LABEL_FIELDS = ("label", "description", "notes")
MAX_LABEL = 80
MAX_TEXT = 2000
# Labels reach HTML, DOT and GraphML: keep them printable and single-line (escaping happens on output).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def top_associations(associations: pd.DataFrame, latent: str, q_max: float = 0.05, top: int = 3) -> pd.DataFrame:
    """The latent's phenotypes with q < q_max, strongest |rho| first."""
    rows = associations[(associations["latent"] == latent) & (associations["q"] < q_max)]
    return rows.reindex(rows["rho"].abs().sort_values(ascending=False).index).head(top)


def describe_latent(
    latent: str,
    associations: pd.DataFrame | None = None,
    driven: pd.DataFrame | None = None,
    q_max: float = 0.05,
    top: int = 3,
) -> str:
    """One or two sentences: what the latent rises / falls with, and what it drives.

    associations: the association table (latent, phenotype, rho, q, ...); driven: ranked decoder
    sensitivities (latent, feature, rank, ...) from sensitivity.ranked_features.
    """
    parts = []
    if associations is not None and len(associations):
        best = top_associations(associations, latent, q_max, top)
        rises = [f"{r.phenotype} (rho {r.rho:+.2f})" for r in best.itertuples() if r.rho > 0]
        falls = [f"{r.phenotype} (rho {r.rho:+.2f})" for r in best.itertuples() if r.rho < 0]
        clauses = []
        if rises:
            clauses.append("rises with " + ", ".join(rises))
        if falls:
            clauses.append("falls with " + ", ".join(falls))
        parts.append(f"{latent} " + "; ".join(clauses) + "." if clauses
                     else f"{latent}: no phenotype is associated at q < {q_max:g}.")
    if driven is not None and len(driven):
        features = driven[driven["latent"] == latent].sort_values("rank").head(top)["feature"].tolist()
        if features:
            parts.append("Drives mostly " + ", ".join(map(str, features)) + ".")
    return " ".join(parts) if parts else f"{latent}: no associations computed yet."


def clean_text(text: str | None, limit: int, what: str) -> str:
    text = "" if text is None else str(text)
    if len(text) > limit:
        raise UserInputError(f"the {what} is {len(text)} characters long; keep it under {limit}")
    return text


def clean_label(text: str | None, latent: str) -> str:
    label = _CONTROL.sub(" ", clean_text(text, MAX_LABEL, f"label of {latent}")).strip()
    return label or latent


def merged_labels(
    latents: list[str],
    stored: dict | None = None,
    associations: pd.DataFrame | None = None,
    driven: pd.DataFrame | None = None,
) -> dict[str, dict[str, str]]:
    """Every latent's label, description and notes: the stored ones, generated where absent."""
    stored = stored or {}
    # split once: describing 100 latents must not scan a 200,000-row table 100 times
    by_latent = dict(tuple(associations.groupby("latent", sort=False))) if associations is not None else {}
    out = {}
    for latent in latents:
        entry = stored.get(latent) or {}
        description = entry.get("description")
        if not description:
            own = by_latent.get(latent, associations.iloc[:0] if associations is not None else None)
            description = describe_latent(latent, own, driven)
        out[latent] = {
            "label": clean_label(entry.get("label"), latent),
            "description": description,
            "notes": entry.get("notes") or "",
        }
    return out


def display_name(latent: str, labels: dict | None) -> str:
    """What to show for a latent: its label if renamed, e.g. "Desaturation (sleep:1)"."""
    label = ((labels or {}).get(latent) or {}).get("label") or latent
    return latent if label == latent else f"{label} ({latent})"


def load_labels(run_dir: str | Path, latents: list[str], associations: pd.DataFrame | None = None,
                driven: pd.DataFrame | None = None) -> dict[str, dict[str, str]]:
    return merged_labels(latents, read_labels(Path(run_dir)), associations, driven)


def save_labels(run_dir: str | Path, labels: dict[str, dict[str, str]]) -> Path:
    """Write labels.json (replacing it atomically: a reader never sees half a file)."""
    clean = {}
    for latent, entry in labels.items():
        clean[str(latent)] = {
            "label": clean_label(entry.get("label"), str(latent)),
            "description": clean_text(entry.get("description"), MAX_TEXT, f"description of {latent}"),
            "notes": clean_text(entry.get("notes"), MAX_TEXT, f"notes on {latent}"),
        }
    path = Path(run_dir) / LABELS
    temporary = path.with_name(f".{LABELS}.tmp")
    temporary.write_text(json.dumps(clean, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)
    return path


def update_label(run_dir: str | Path, latent: str, label: str | None = None, notes: str | None = None,
                 description: str | None = None) -> dict:
    """Rename / annotate one latent, keeping every other entry as stored; returns the saved labels.

    Pass the description shown to the user, so tools that only read labels.json (graph, exports)
    get it too; an entry without one gets its description generated again when next shown.
    """
    labels = {k: dict(v) for k, v in read_labels(Path(run_dir)).items() if isinstance(v, dict)}
    entry = labels.setdefault(latent, {})
    entry.setdefault("label", latent)
    entry.setdefault("description", "")
    entry.setdefault("notes", "")
    if label is not None:
        entry["label"] = label
    if notes is not None:
        entry["notes"] = notes
    if description is not None:
        entry["description"] = description
    save_labels(run_dir, labels)
    return read_labels(Path(run_dir))
