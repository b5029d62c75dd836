"""Checks on tables once read: the subject-id column, per-table and cross-modal problems.

Each check returns (or appends) Problem records instead of raising, so that datasets.py can
report every problem at once. Numbers of rows are file rows (the header is row 1 in CSV / Excel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .preprocessing import DEFAULT_MAX_CATEGORIES, join_ids, looks_like_id_name, plan_column
from .problems import Problem, error, list_items, warning
from .readers import infer_column_types

MIN_SUBJECTS = 20  # below this a train / validation split says nothing


# --------------------------------------------------------------------------------- id column


def id_candidates(frame: pd.DataFrame) -> list[str]:
    """Columns that could be the subject id: id-like names, then a unique first column of labels."""
    named = [str(c) for c in frame.columns if looks_like_id_name(c)]
    first = str(frame.columns[0])
    values = frame.iloc[:, 0]
    numbers = pd.to_numeric(values, errors="coerce")
    fractional = bool((numbers.notna() & (numbers != numbers.round())).any())  # a measurement, not an id
    unique_first = values.notna().all() and values.is_unique and not fractional
    if unique_first and first not in named:
        named.append(first)
    return named


def detect_id_column(frames: Sequence[pd.DataFrame]) -> str | None:
    """An id-like column present in every table (by name, or a unique first column), else None."""
    if not frames:
        return None
    shared = [c for c in id_candidates(frames[0]) if all(c in map(str, f.columns) for f in frames[1:])]
    return shared[0] if shared else None


def guess_id_column(columns: Sequence[str]) -> str | None:
    """From names alone (before reading values): the first id-like name, else the first column."""
    columns = [str(c) for c in columns]
    return next((c for c in columns if looks_like_id_name(c)), columns[0] if columns else None)


def normalise_ids(values: pd.Series) -> pd.Series:
    """Ids as text: 12, 12.0, "12.0" and " 12 " are one subject; "007" stays "007"; empty is missing."""

    def one(value):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        text = str(value).strip()
        if text.endswith(".0") and text[:-2].isdigit():
            text = text[:-2]
        return text or None

    if pd.api.types.is_float_dtype(values) or pd.api.types.is_integer_dtype(values):
        numbers = values.astype("float64")
        whole = numbers.notna() & (numbers == numbers.round())
        out = pd.Series(None, index=values.index, dtype=object)
        out[whole] = numbers[whole].astype("int64").astype(str).astype(object)
        rest = numbers.notna() & ~whole
        out[rest] = numbers[rest].astype(str).astype(object)
        return out
    if pd.api.types.is_string_dtype(values) and not pd.api.types.is_object_dtype(values):
        # "12.0" is a whole-number id written by a float column (pandas exports do this): same as "12"
        text = values.str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
        return text.astype(object).where(text.notna() & (text != ""), None)
    return values.map(one).astype(object)


def index_by_id(frame: pd.DataFrame, label: str, row_offset: int, id_column: str,
                problems: list[Problem]) -> pd.DataFrame | None:
    """The table indexed by normalised subject ids, its text columns typed; None (and problems
    appended) when ids are missing or duplicated or the id column is absent."""
    columns = [str(c) for c in frame.columns]
    if id_column not in columns:
        problems.append(error(label, f"no subject-id column {id_column!r}; the columns are "
                              f"{list_items(columns, 12)}", "choose the id column that every file shares",
                              column=id_column))
        return None
    ids = normalise_ids(frame[id_column])
    ok = True
    missing = np.flatnonzero(ids.isna().to_numpy())
    if len(missing):
        ok = False
        problems.append(error(label, f"{len(missing)} row(s) have no subject id", "fill in the ids or delete "
                              "these rows", column=id_column, rows=list_items((missing + row_offset).tolist())))
    duplicated = ids[ids.duplicated(keep=False) & ids.notna()]
    if len(duplicated):
        ok = False
        dup_ids = list(dict.fromkeys(duplicated.tolist()))
        rows = (np.flatnonzero(ids.duplicated(keep=False).to_numpy() & ids.notna().to_numpy()) + row_offset)
        problems.append(error(label, f"{len(dup_ids)} duplicate subject id(s): {list_items(dup_ids)}",
                              "keep one row per subject (average repeated visits or pick one)",
                              column=id_column, rows=list_items(rows.tolist())))
    if not ok:
        return None
    body = frame.drop(columns=[c for c in frame.columns if str(c) == id_column]).reset_index(drop=True)
    body, type_problems = infer_column_types(body, label, row_offset)
    body.index = pd.Index(ids.tolist(), name=id_column, dtype=object)
    problems.extend(type_problems)
    return body


# ------------------------------------------------------------------------------ table checks


def inf_problems(label: str, frame: pd.DataFrame, row_offset: int) -> list[Problem]:
    out = []
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
            rows = np.flatnonzero(np.isinf(values))
            if len(rows):
                out.append(warning(label, f"{len(rows)} +-inf value(s); treated as missing",
                                   "check how these values were computed (a division by zero?)",
                                   column=str(column), rows=list_items((rows + row_offset).tolist())))
    return out


def column_problems(label: str, modality: str, frame: pd.DataFrame, latents: int | None,
                    max_categories: int = DEFAULT_MAX_CATEGORIES) -> list[Problem]:
    plans = [plan_column(modality, str(c), frame[c], max_categories) for c in frame.columns]
    usable = [p for p in plans if p.used]
    n_features = sum(1 if p.decision != "one-hot" else len(p.levels) for p in usable)
    out = []
    if not usable:
        reasons = "; ".join(f"{p.column}: {p.decision} ({p.reason})" for p in plans[:6]) or "no columns besides the id"
        out.append(error(label, f"modality {modality!r} has no usable column ({reasons})",
                         "add numeric or categorical measurements to this table"))
    elif latents is not None and n_features < latents:
        out.append(error(label, f"too few columns for the latents asked: modality {modality!r} has "
                         f"{n_features} usable column(s) but {latents} latent(s) were asked",
                         f"ask at most {n_features} latent(s) for {modality!r}, or add columns"))
    return out


def cross_modal_problems(tables: Mapping[str, pd.DataFrame], labels: Mapping[str, str], join: str) -> list[Problem]:
    out = []
    if len(tables) >= 2:
        for name, frame in tables.items():
            others = pd.Index(np.concatenate([f.index.to_numpy(dtype=object) for n, f in tables.items() if n != name]),
                              dtype=object)
            if not frame.index.isin(others).any():
                mine = list_items(frame.index[:3].tolist(), 3)
                theirs = list_items(others[:3].tolist(), 3)
                out.append(error(labels[name], f"no subject is shared with the other modalities: ids here look like "
                                 f"{mine}, elsewhere like {theirs}",
                                 "check that every file uses the same subject ids in the same format"))
    n = len(join_ids(tables, join))
    if not out and n < MIN_SUBJECTS:
        what = "subjects with every modality" if join == "complete" else "subjects"
        out.append(error(", ".join(labels.values()), f"too few subjects: {n} {what}; at least {MIN_SUBJECTS} are "
                         "needed", "add subjects" + (", or keep subjects that miss modalities (join 'mask')"
                                                     if join == "complete" else "")))
    return out
