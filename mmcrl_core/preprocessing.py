"""From raw modality tables to the float arrays the model sees, fitted on the training split only.

Every column gets a decision with a reason a researcher can read (shown in the app and saved with
the run in preprocessing.json):
  numeric                 kept, standardised with the training mean and sd (+-inf become missing)
  binary                  two values: one 0/1 indicator, then standardised
  one-hot                 3..max_categories values: one indicator per value seen in training
  excluded                free text / too many categories, dates, id-like columns
  dropped                 constant or all missing (in the training split)
Missing cells stay NaN (the model masks them out); nothing is imputed. `encode` applies the same
fitted object to new tables, so a category unseen in training encodes as all zeros.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .errors import UserInputError

DEFAULT_MAX_CATEGORIES = 10
FORMAT_VERSION = 1
# Column names that say "identifier" rather than "measurement".
ID_NAME = re.compile(
    r"^(id|eid|seqn|uuid|guid|index|unnamed: ?\d+)$"
    r"|(^|[_ .\-])(id|eid|uuid|guid)$"
    r"|^(subject|participant|patient|sample|person|individual|record|case)([_ .\-]?(id|no|nr|number|code|key))?$",
    re.IGNORECASE,
)
DATE_TEXT = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?$")
Decision = Literal["numeric", "binary", "one-hot", "excluded", "dropped"]
USED_DECISIONS = ("numeric", "binary", "one-hot")


def looks_like_id_name(name: str) -> bool:
    return bool(ID_NAME.search(str(name).strip()))


def category_key(value) -> str:
    """How a category value is compared: 1.0, 1 and "1" are the same level."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class ColumnPlan:
    modality: str
    column: str
    decision: Decision
    reason: str
    levels: list[str] = field(default_factory=list)  # binary: [other, indicated]; one-hot: all
    features: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @property
    def used(self) -> bool:
        return self.decision in USED_DECISIONS


def _numeric_values(values: pd.Series) -> np.ndarray:
    numbers = np.array(pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    numbers[np.isinf(numbers)] = np.nan
    return numbers


def plan_column(modality: str, column: str, values: pd.Series,
                max_categories: int = DEFAULT_MAX_CATEGORIES) -> ColumnPlan:
    """Decide what to do with one column from its (training) values; no statistics yet."""

    def plan(decision: Decision, reason: str, levels: list[str] | None = None) -> ColumnPlan:
        return ColumnPlan(modality, str(column), decision, reason, levels or [])

    is_numeric = (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)) and not isinstance(
        values.dtype, pd.CategoricalDtype)
    filled = values.notna()
    n_inf = 0
    if is_numeric:
        raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        n_inf = int(np.isinf(raw).sum())
        filled = pd.Series(np.isfinite(raw), index=values.index)
    n_filled = int(filled.sum())
    if n_filled == 0:
        note = f" ({n_inf} are +-inf, treated as missing)" if n_inf else ""
        return plan("dropped", f"all values missing{note}")
    if pd.api.types.is_datetime64_any_dtype(values):
        return plan("excluded", "dates are not measurements; derive a number (e.g. age at visit) to use it")
    if looks_like_id_name(column):
        return plan("excluded", "id-like column name; identifiers carry no signal")

    if is_numeric:
        numbers = _numeric_values(values)
        finite = numbers[np.isfinite(numbers)]
        distinct = np.unique(finite)
        inf_note = f"; {n_inf} +-inf value(s) treated as missing" if n_inf else ""
        if len(distinct) == 1:
            return plan("dropped", f"constant (every value is {category_key(distinct[0])}){inf_note}")
        integer = bool(np.all(finite == np.round(finite)))
        # a row counter (1, 2, 3, ...) left by an export, not a measurement
        if integer and len(finite) == len(values) >= 20 and np.all(np.diff(finite) == 1):
            return plan("excluded", "id-like: consecutive whole numbers, one per row (a row counter)")
        if len(distinct) == 2:
            low, high = (category_key(v) for v in distinct)
            return plan("numeric", f"binary numeric ({low}/{high}): kept as a number, standardised{inf_note}")
        code_note = (f"; only {len(distinct)} whole-number values: if they are codes, not amounts, store the "
                     "column as text to one-hot encode it") if integer and len(distinct) <= max_categories else ""
        return plan("numeric", f"numeric: standardised with the training mean and sd{inf_note}{code_note}")

    keys = values[filled].map(category_key)
    counts = keys.value_counts()
    levels = sorted(counts.index.tolist())
    if len(levels) == 1:
        return plan("dropped", f"constant (every value is {levels[0]!r})")
    sample = keys.iloc[:500]
    if sample.map(lambda v: bool(DATE_TEXT.match(v))).mean() >= 0.9:
        return plan("excluded", "dates are not measurements; derive a number (e.g. age at visit) to use it")
    if len(levels) == 2:
        return plan("binary", f"binary ({levels[0]!r}/{levels[1]!r}): one 0/1 indicator of {levels[1]!r}", levels)
    if len(levels) <= max_categories:
        return plan("one-hot", f"categorical with {len(levels)} values: one indicator per value", levels)
    if keys.str.len().mean() > 30 or keys.str.split().str.len().mean() >= 3:
        return plan("excluded", f"free text ({len(levels)} distinct values)")
    if len(levels) == n_filled:
        return plan("excluded", "id-like: a different text value in every row")
    return plan("excluded", f"{len(levels)} categories, over the cap of {max_categories}; group rare values "
                "or raise the cap to use it")


def _encode_column(plan: ColumnPlan, values: pd.Series) -> np.ndarray:
    """Unstandardised features of one column, shape (rows, len(plan.features)), NaN where missing."""
    if plan.decision == "numeric":
        return _numeric_values(values)[:, None]
    missing = values.isna().to_numpy()
    keys = values.map(lambda v: None if pd.isna(v) else category_key(v)).to_numpy(dtype=object)
    indicated = plan.levels[1:] if plan.decision == "binary" else plan.levels
    out = np.stack([(keys == level).astype("float64") for level in indicated], axis=1)
    out[missing] = np.nan
    return out


def _feature_names(plan: ColumnPlan) -> list[str]:
    if plan.decision == "numeric":
        return [plan.column]
    indicated = plan.levels[1:] if plan.decision == "binary" else plan.levels
    return [f"{plan.column}={level}" for level in indicated]


def id_index(values, name: str | None = None) -> pd.Index:
    """Subject ids as an object-dtype Index of str. Object, not pandas' Arrow string dtype: isin /
    reindex between the two dtypes is some 20x slower, and ids are joined often."""
    return pd.Index([str(v) for v in values], dtype=object, name=name)


def join_ids(tables: Mapping[str, pd.DataFrame], join: str) -> np.ndarray:
    """Subjects kept: in every modality ('complete') or in any ('mask'), in order of first appearance."""
    indexes = [id_index(frame.index) for frame in tables.values()]
    if not indexes:
        return np.array([], dtype=object)
    if join == "complete":
        kept = indexes[0]
        for index in indexes[1:]:
            kept = kept[kept.isin(index)]
    else:
        kept = pd.Index(pd.unique(np.concatenate([index.to_numpy(dtype=object) for index in indexes])), dtype=object)
    return kept.to_numpy(dtype=object)


class Preprocessor:
    """Column decisions, encodings and scaling per modality, fitted on the training subjects."""

    def __init__(self, plans: dict[str, list[ColumnPlan]], join: str = "mask",
                 max_categories: int = DEFAULT_MAX_CATEGORIES, id_column: str | None = None):
        if join not in ("complete", "mask"):
            raise UserInputError(f"join must be 'complete' or 'mask', not {join!r}")
        self.plans = plans
        self.join = join
        self.max_categories = max_categories
        self.id_column = id_column

    # ------------------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, tables: Mapping[str, pd.DataFrame], train_ids: Iterable | None = None, join: str = "mask",
            max_categories: int = DEFAULT_MAX_CATEGORIES, id_column: str | None = None) -> Preprocessor:
        """Decide and fit on the rows of `train_ids` only (all rows when None)."""
        train = None if train_ids is None else id_index(train_ids)
        plans: dict[str, list[ColumnPlan]] = {}
        empty: list[str] = []
        for modality, frame in tables.items():
            frame = frame.copy()
            frame.index = id_index(frame.index)
            rows = frame if train is None else frame[frame.index.isin(train)]
            if rows.empty:
                raise UserInputError(f"modality {modality!r}: no training subject has data for it; "
                                     "check the subject ids or use more subjects")
            column_plans = []
            for column in frame.columns:
                plan = plan_column(modality, str(column), rows[column], max_categories)
                if plan.used:
                    plan.features = _feature_names(plan)
                    encoded = _encode_column(plan, rows[column])
                    with np.errstate(all="ignore"):
                        mean = np.nanmean(encoded, axis=0)
                        std = np.nanstd(encoded, axis=0)
                    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
                    plan.mean, plan.std = mean.tolist(), std.tolist()
                column_plans.append(plan)
            plans[modality] = column_plans
            if not any(p.used for p in column_plans):
                empty.append(modality)
        if empty:
            raise UserInputError(
                f"no usable column in modality {', '.join(map(repr, empty))}: every column was dropped or "
                "excluded (see the column decisions); add numeric or categorical measurements")
        return cls(plans, join=join, max_categories=max_categories, id_column=id_column)

    # ---------------------------------------------------------------------------- applying
    @property
    def modalities(self) -> list[str]:
        return list(self.plans)

    @property
    def feature_names(self) -> dict[str, list[str]]:
        return {m: [f for p in plans if p.used for f in p.features] for m, plans in self.plans.items()}

    @property
    def decisions(self) -> pd.DataFrame:
        rows = [
            {"modality": p.modality, "column": p.column, "decision": p.decision, "reason": p.reason,
             "features": ", ".join(p.features)}
            for plans in self.plans.values() for p in plans
        ]
        return pd.DataFrame(rows, columns=["modality", "column", "decision", "reason", "features"])

    def transform(self, tables: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(subject ids, {modality: float32 array}); NaN marks a missing cell, and a subject lacking a
        modality has an all-NaN row in it (only possible with join='mask')."""
        absent = [m for m in self.plans if m not in tables]
        if absent and self.join == "complete":
            raise UserInputError(f"modality {', '.join(map(repr, absent))} is missing from the data; the run "
                                 "was trained on complete cases and needs every modality")
        problems = []
        for modality, frame in tables.items():
            if modality not in self.plans:
                continue
            lacking = [p.column for p in self.plans[modality] if p.used and p.column not in frame.columns]
            if lacking:
                problems.append(f"modality {modality!r} lacks column(s) {', '.join(map(repr, lacking))}")
        if problems:
            raise UserInputError("; ".join(problems) + ": give the same columns as the training data")
        present = {m: tables[m] for m in self.plans if m in tables}
        if not present:
            raise UserInputError(f"none of the modalities {', '.join(self.plans)} is in the data")
        ids = join_ids(present, self.join)
        arrays = {}
        for modality, plans in self.plans.items():
            width = sum(len(p.features) for p in plans if p.used)
            out = np.full((len(ids), width), np.nan, dtype="float32")
            if modality in present:
                frame = present[modality].copy()
                frame.index = id_index(frame.index)
                frame = frame[~frame.index.duplicated()]
                rows = frame.reindex(pd.Index(ids, dtype=object))
                blocks = []
                for plan in plans:
                    if plan.used:
                        encoded = _encode_column(plan, rows[plan.column])
                        blocks.append((encoded - np.asarray(plan.mean)) / np.asarray(plan.std))
                if blocks:
                    out = np.concatenate(blocks, axis=1).astype("float32")
            arrays[modality] = out
        return ids, arrays

    # ------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "join": self.join,
            "max_categories": self.max_categories,
            "id_column": self.id_column,
            "modalities": {m: [asdict(p) for p in plans] for m, plans in self.plans.items()},
        }

    @classmethod
    def from_dict(cls, payload: Mapping) -> Preprocessor:
        version = payload.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise UserInputError(f"preprocessing.json has format {version}; this mmcrl reads up to "
                                 f"{FORMAT_VERSION}: update mmcrl")
        plans = {m: [ColumnPlan(**p) for p in items] for m, items in payload["modalities"].items()}
        return cls(plans, join=payload.get("join", "mask"),
                   max_categories=payload.get("max_categories", DEFAULT_MAX_CATEGORIES),
                   id_column=payload.get("id_column"))
