"""Multimodal tables in, aligned by subject id and validated: the entry point of the data layer.

    load_tables(["sleep=sleep.csv", "blood.parquet"], id_column=None) -> MultimodalTables
    validate_sources(...) -> list[Problem]          every problem at once, never the first only
    load_wide_table(path, assignment) -> MultimodalTables   one table, columns assigned to modalities
    read_tables(...) -> MultimodalTables            reading checks only (a few new subjects to encode)

Reading is in readers.py, problem records in problems.py, the checks in validation.py, column
decisions and scaling in preprocessing.py (Preprocessor), examples in examples.py, the workspace
registry in dataset_store.py. This module owns `python -m mmcrl_core validate`.

Tables keep their raw values, indexed by subject id (as text, so "007" and 7 never collide).
Joining is left to the Preprocessor ('complete' cases or 'mask'); nothing is imputed.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import MODALITY_NAME_PATTERN, DataSource
from .errors import UserInputError
from .preprocessing import DEFAULT_MAX_CATEGORIES, Preprocessor, join_ids
from .problems import DataProblemsError, Problem, error, has_errors, list_items, problems_frame, warning
from .readers import EXCEL_SUFFIXES, read_table, sha256_file
from .validation import (
    MIN_SUBJECTS,
    column_problems,
    cross_modal_problems,
    detect_id_column,
    id_candidates,
    index_by_id,
    inf_problems,
)

__all__ = [
    "COVARIATES",
    "DataProblemsError",
    "MIN_SUBJECTS",
    "MultimodalTables",
    "Preprocessor",
    "Problem",
    "assign_by_patterns",
    "assign_by_prefix",
    "inspect_sources",
    "inspect_wide_table",
    "load_tables",
    "load_wide_table",
    "parse_source",
    "problems_frame",
    "read_tables",
    "validate_sources",
]

COVARIATES = "covariates"  # role of covariate columns in a wide-table assignment
IGNORE = ""  # role of columns left out of a wide table


@dataclass
class MultimodalTables:
    """Raw tables per modality, each indexed by subject id (text), plus optional covariates."""

    tables: dict[str, pd.DataFrame]
    id_column: str
    sha256: dict[str, str]
    covariates: pd.DataFrame | None = None
    covariates_sha256: str | None = None
    sources: list[DataSource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # warnings that did not stop loading

    @property
    def modalities(self) -> list[str]:
        return list(self.tables)

    def subject_ids(self, join: str = "mask") -> np.ndarray:
        return join_ids(self.tables, join)

    def summary(self) -> pd.DataFrame:
        """One row per modality: subjects, columns, missing cells % (of its own rows)."""
        rows = []
        for name, frame in self.tables.items():
            cells = frame.size
            rows.append({
                "modality": name,
                "subjects": len(frame),
                "columns": frame.shape[1],
                "missing_cells": int(frame.isna().sum().sum()),
                "missing_pct": round(100 * float(frame.isna().sum().sum()) / cells, 2) if cells else 0.0,
                "columns_with_missing": int(frame.isna().any().sum()),
            })
        return pd.DataFrame(rows)

    def missingness(self) -> pd.DataFrame:
        """modality, column, missing_pct: for the missingness plot."""
        rows = [
            {"modality": name, "column": str(column), "missing_pct": round(100 * float(share), 2)}
            for name, frame in self.tables.items()
            for column, share in frame.isna().mean().items()
        ]
        return pd.DataFrame(rows, columns=["modality", "column", "missing_pct"])

    def overlap(self) -> pd.DataFrame:
        """Subjects per combination of modalities present (an UpSet-style count), largest first."""
        all_ids = self.subject_ids("mask")
        if len(all_ids) == 0:
            return pd.DataFrame(columns=["modalities", "subjects"])
        presence = pd.DataFrame({name: pd.Index(all_ids, dtype=object).isin(frame.index) for name, frame in self.tables.items()})
        counts = presence.value_counts()  # one row per combination present, vectorised
        labels = [" + ".join(n for n, present in zip(presence.columns, combo) if present) for combo in counts.index]
        return pd.DataFrame({"modalities": labels, "subjects": counts.to_numpy()})

    def overlap_matrix(self) -> pd.DataFrame:
        """Subjects shared by each pair of modalities (diagonal: subjects of the modality)."""
        names = self.modalities
        matrix = pd.DataFrame(0, index=names, columns=names, dtype=int)
        for a in names:
            for b in names:
                matrix.loc[a, b] = int(self.tables[a].index.isin(self.tables[b].index).sum())
        return matrix

    def fingerprint(self, extra: Mapping | None = None) -> str:
        """Same sources, same id column and settings -> same fingerprint (identical re-uploads)."""
        parts = sorted(f"{m}:{h}" for m, h in self.sha256.items())
        parts.append(f"id:{self.id_column}")
        parts.append(f"covariates:{self.covariates_sha256 or ''}")
        for key, value in sorted((extra or {}).items()):
            parts.append(f"{key}:{value}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# ------------------------------------------------------------------------------------ sources


def parse_source(item: DataSource | str | Mapping) -> DataSource:
    """A DataSource from 'NAME=PATH', 'PATH' (modality = file stem), 'PATH#SHEET' or a dict."""
    if isinstance(item, DataSource):
        return item
    if isinstance(item, Mapping):
        return DataSource(**item)
    text = str(item)
    name, sep, path = text.partition("=")
    if not sep or not name or "/" in name or "\\" in name:
        name, path = "", text
    sheet = None
    base, hash_sign, maybe_sheet = path.rpartition("#")
    if hash_sign and Path(base).suffix.lower() in EXCEL_SUFFIXES:
        path, sheet = base, maybe_sheet
    return DataSource(modality=name.strip() or Path(path).stem, path=path, sheet=sheet)


@dataclass
class _RawTable:
    """A table as read, before the id column is set: what the checks work on."""

    modality: str
    label: str  # file name used in messages
    frame: pd.DataFrame
    sha256: str
    row_offset: int = 2


def _read_sources(sources: Sequence[DataSource], problems: list[Problem],
                  text_columns: tuple[str, ...] = ()) -> list[_RawTable]:
    raw = []
    seen: dict[str, str] = {}
    for source in sources:
        label = Path(source.path).name
        if not MODALITY_NAME_PATTERN.match(source.modality):
            problems.append(error(label, f"modality name {source.modality!r} is not allowed",
                                  "start with a letter or digit; use letters, digits, space, '_', '-' or '.'"))
            continue
        if source.modality in seen:
            problems.append(error(label, f"modality {source.modality!r} is given twice (also {seen[source.modality]})",
                                  "give each file its own modality name, e.g. NAME=PATH"))
            continue
        seen[source.modality] = label
        result = read_table(source.path, source.sheet, label, text_columns)
        problems.extend(result.problems)
        if result.frame is not None:
            raw.append(_RawTable(source.modality, label, result.frame, sha256_file(Path(source.path)),
                                 result.row_offset))
    return raw


def _latents_for(latents: int | Mapping[str, int] | None, modality: str) -> int | None:
    if latents is None or isinstance(latents, int):
        return latents
    return latents.get(modality)


def _assemble(raw_tables: list[_RawTable], raw_covariates: _RawTable | None, id_column: str | None,
              join: str, latents, max_categories: int, problems: list[Problem],
              sources: list[DataSource], full_checks: bool = True) -> MultimodalTables | None:
    if join not in ("complete", "mask"):
        raise UserInputError(f"join must be 'complete' or 'mask', not {join!r}")
    if not raw_tables:
        if not problems:
            problems.append(error("(no file)", "no data given", "give at least one table"))
        return None
    if id_column is None:
        id_column = detect_id_column([r.frame for r in raw_tables])
        if id_column is None:
            own = {r.label: next(iter(id_candidates(r.frame)), None) for r in raw_tables}
            found = "; ".join(f"{label}: {column!r}" if column else f"{label}: none" for label, column in own.items())
            problems.append(error(", ".join(own), "no subject-id column found in every file (looked for names like "
                                  f"id, subject_id, eid, seqn, or a first column with unique values; found {found})",
                                  "give the id column the same name in every file, or choose it (--id-column)"))
            # still check each file's own ids, so that their problems are reported now, not on the next try
            for raw in raw_tables:
                if own[raw.label]:
                    index_by_id(raw.frame, raw.label, raw.row_offset, own[raw.label], problems)
            return None
    tables: dict[str, pd.DataFrame] = {}
    labels: dict[str, str] = {}
    for raw in raw_tables:
        body = index_by_id(raw.frame, raw.label, raw.row_offset, id_column, problems)
        if body is None:
            continue
        problems.extend(inf_problems(raw.label, body, raw.row_offset))
        if full_checks:
            problems.extend(column_problems(raw.label, raw.modality, body, _latents_for(latents, raw.modality),
                                            max_categories))
        tables[raw.modality] = body
        labels[raw.modality] = raw.label
    covariates = None
    if raw_covariates is not None:
        covariates = index_by_id(raw_covariates.frame, raw_covariates.label, raw_covariates.row_offset,
                                 id_column, problems)
        if covariates is not None and tables:
            in_any = covariates.index.isin(join_ids(tables, "mask"))
            if not in_any.any():
                problems.append(warning(raw_covariates.label, "no covariate row matches a subject of the modalities",
                                        "check that the covariates use the same subject ids"))
    if full_checks and len(tables) == len(raw_tables):
        problems.extend(cross_modal_problems(tables, labels, join))
    if has_errors(problems):
        return None
    return MultimodalTables(
        tables=tables, id_column=id_column, sha256={r.modality: r.sha256 for r in raw_tables},
        covariates=covariates, covariates_sha256=raw_covariates.sha256 if raw_covariates else None,
        sources=sources, problems=[p for p in problems if not p.is_error],
    )


def inspect_sources(sources: Iterable, id_column: str | None = None, *, join: str = "mask",
                    covariates: DataSource | str | None = None, latents: int | Mapping[str, int] | None = None,
                    max_categories: int = DEFAULT_MAX_CATEGORIES,
                    full_checks: bool = True) -> tuple[MultimodalTables | None, list[Problem]]:
    """Read and check everything; (tables or None if any error, every problem found).

    full_checks=False checks only what reading needs (files, id column, missing or duplicate ids),
    for encoding new subjects where a few rows or a single modality are fine."""
    problems: list[Problem] = []
    parsed = []
    for item in sources:
        try:
            parsed.append(parse_source(item))
        except ValueError as exc:
            problems.append(error(str(item), f"not a data source: {exc}", "give NAME=PATH or PATH"))
    if id_column is not None:
        id_column = str(id_column).strip() or None
    text_columns = (id_column,) if id_column else ()
    raw_tables = _read_sources(parsed, problems, text_columns)
    raw_covariates = None
    if covariates is not None:
        cov_source = parse_source(covariates)
        result = read_table(cov_source.path, cov_source.sheet, text_columns=text_columns)
        problems.extend(result.problems)
        if result.frame is not None:
            raw_covariates = _RawTable(COVARIATES, Path(cov_source.path).name, result.frame,
                                       sha256_file(Path(cov_source.path)), result.row_offset)
    sha_by_modality = {r.modality: r.sha256 for r in raw_tables}
    read_sources = [s.model_copy(update={"sha256": sha_by_modality[s.modality]})
                    for s in parsed if s.modality in sha_by_modality]
    tables = _assemble(raw_tables, raw_covariates, id_column, join, latents, max_categories, problems, read_sources,
                       full_checks)
    return tables, problems


def validate_sources(sources: Iterable, id_column: str | None = None, **options) -> list[Problem]:
    """Every problem in the data (errors and warnings), all at once."""
    return inspect_sources(sources, id_column, **options)[1]


def load_tables(sources: Iterable, id_column: str | None = None, **options) -> MultimodalTables:
    """Read, align and check; raises DataProblemsError (a UserInputError) listing every error."""
    tables, problems = inspect_sources(sources, id_column, **options)
    if tables is None:
        raise DataProblemsError(problems)
    return tables


def read_tables(sources: Iterable, id_column: str | None = None, **options) -> MultimodalTables:
    """Tables checked only for files, id column and ids (no subject or column counts, no overlap):
    for `encode`, where a handful of new subjects is normal. Raises DataProblemsError."""
    return load_tables(sources, id_column, full_checks=False, **options)


def _index_by_id(raw: _RawTable, id_column: str, problems: list[Problem]) -> pd.DataFrame | None:
    # Kept for callers written against the first version; use read_tables() or validation.index_by_id.
    return index_by_id(raw.frame, raw.label, raw.row_offset, id_column, problems)


# ------------------------------------------------------------------------------- wide tables


def assign_by_prefix(columns: Iterable[str], separator: str = "_", id_column: str | None = None) -> dict[str, str]:
    """column -> modality = the part before the first separator ('blood_hdl' -> 'blood'); columns
    without the separator are left unassigned ('')."""
    out = {}
    for column in columns:
        column = str(column)
        head, sep, _ = column.partition(separator)
        out[column] = head if sep and head and column != id_column else IGNORE
    return out


def assign_by_patterns(columns: Iterable[str], patterns: Mapping[str, str],
                       id_column: str | None = None) -> dict[str, str]:
    """column -> the first modality whose regular expression matches it (searched, case-insensitive)."""
    compiled = []
    for modality, pattern in patterns.items():
        try:
            compiled.append((modality, re.compile(pattern, re.IGNORECASE)))
        except re.error as exc:
            raise UserInputError(f"pattern {pattern!r} for modality {modality!r} is not a valid regular "
                                 f"expression: {exc}") from None
    out = {}
    for column in columns:
        column = str(column)
        match = next((m for m, rx in compiled if rx.search(column)), IGNORE)
        out[column] = IGNORE if column == id_column else match
    return out


def inspect_wide_table(path: str | Path, assignment: Mapping[str, str], id_column: str | None = None, *,
                       sheet: str | None = None, join: str = "mask", latents=None,
                       max_categories: int = DEFAULT_MAX_CATEGORIES) -> tuple[MultimodalTables | None, list[Problem]]:
    """One table whose columns are assigned to modalities (or COVARIATES, or '' to leave out)."""
    path = Path(path)
    problems: list[Problem] = []
    result = read_table(path, sheet, text_columns=(id_column,) if id_column else ())
    problems.extend(result.problems)
    if result.frame is None:
        return None, problems
    frame = result.frame
    label = path.name
    if id_column is None:
        id_column = detect_id_column([frame])
        if id_column is None:
            problems.append(error(label, "no subject-id column found", "choose the id column"))
            return None, problems
    unknown = [c for c in assignment if c not in map(str, frame.columns)]
    if unknown:
        problems.append(error(label, f"assigned column(s) not in the file: {list_items(unknown)}",
                              "assign only columns of this table"))
    sha = sha256_file(path)
    groups: dict[str, list[str]] = {}
    for column, role in assignment.items():
        if role and column != id_column and column not in unknown:
            groups.setdefault(str(role).strip(), []).append(column)
    modality_groups = {m: cols for m, cols in groups.items() if m != COVARIATES}
    if not modality_groups:
        problems.append(error(label, "no column is assigned to a modality", "assign columns to modalities"))
        return None, problems
    raw_tables = [
        _RawTable(m, f"{label} [{m}]", frame[[id_column, *cols]] if id_column in frame.columns else frame[cols],
                  f"{sha}:{m}", result.row_offset)
        for m, cols in modality_groups.items()
    ]
    raw_covariates = None
    if COVARIATES in groups and id_column in frame.columns:
        raw_covariates = _RawTable(COVARIATES, f"{label} [{COVARIATES}]", frame[[id_column, *groups[COVARIATES]]],
                                   sha, result.row_offset)
    for raw in raw_tables:
        if not MODALITY_NAME_PATTERN.match(raw.modality):
            problems.append(error(label, f"modality name {raw.modality!r} is not allowed",
                                  "start with a letter or digit; use letters, digits, space, '_', '-' or '.'"))
    if has_errors(problems):
        return None, problems
    sources = [DataSource(modality=m, path=str(path), sheet=sheet, sha256=sha) for m in modality_groups]
    tables = _assemble(raw_tables, raw_covariates, id_column, join, latents, max_categories, problems, sources)
    if tables is not None:
        # one file: its sha256 identifies every modality; the assignment is part of the fingerprint
        tables.sha256 = {r.modality: hashlib.sha256(r.sha256.encode() + ",".join(r.frame.columns).encode())
                         .hexdigest() for r in raw_tables}
    return tables, problems


def load_wide_table(path: str | Path, assignment: Mapping[str, str], id_column: str | None = None,
                    **options) -> MultimodalTables:
    tables, problems = inspect_wide_table(path, assignment, id_column, **options)
    if tables is None:
        raise DataProblemsError(problems)
    return tables


# ---------------------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="check data files and report every problem at once",
        description="Read each DATA (PATH, or NAME=PATH; CSV, TSV, TXT, Parquet, Excel as PATH#SHEET), join "
                    "the modalities on the subject id and report every problem found. Exit 2 if any is an error.")
    parser.add_argument("data", nargs="+", metavar="DATA")
    parser.add_argument("--id-column", default=None, help="subject-id column (default: detected)")
    parser.add_argument("--covariates", default=None, help="covariate table (age, sex, diagnoses...)")
    parser.add_argument("--join", choices=["mask", "complete"], default="mask",
                        help="keep subjects missing some modalities (mask, default) or complete cases only")
    parser.add_argument("--latents", default=None, help="K for every modality, or NAME=K,... to check column counts")
    parser.add_argument("--max-categories", type=int, default=DEFAULT_MAX_CATEGORIES,
                        help="one-hot encode text columns with at most this many values")
    parser.add_argument("--show-columns", action="store_true",
                        help="print the decision for every column (kept, one-hot, excluded, dropped) and why")
    parser.set_defaults(handler=_run_validate)


def parse_latents(text: str | None) -> int | dict[str, int] | None:
    if text is None:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return int(text)
        return {name.strip(): int(k) for name, k in (part.split("=", 1) for part in text.split(",") if part.strip())}
    except ValueError:
        raise UserInputError(f"--latents {text!r}: give a number, or NAME=K,NAME=K") from None


def _run_validate(args: argparse.Namespace) -> int:
    tables, problems = inspect_sources(args.data, args.id_column, join=args.join, covariates=args.covariates,
                                       latents=parse_latents(args.latents), max_categories=args.max_categories)
    if problems:
        frame = problems_frame(problems)
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            for row in frame.itertuples(index=False):
                where = row.file + (f" | column {row.column}" if row.column else "") + (
                    f" | rows {row.rows}" if row.rows else "")
                print(f"{row.severity.upper():7} {where}\n        {row.message}" + (
                    f"\n        fix: {row.fix}" if row.fix else ""))
    if tables is None:
        n_errors = sum(p.is_error for p in problems)
        print(f"{n_errors} error(s): the data cannot be used as it is")
        return 2
    summary = tables.summary()
    print(f"OK: {len(tables.subject_ids(args.join))} subjects ({args.join} join), id column {tables.id_column!r}")
    print(summary.to_string(index=False))
    if args.show_columns:
        decisions = Preprocessor.fit(tables.tables, max_categories=args.max_categories).decisions
        print("\nColumn decisions:")
        for row in decisions.itertuples(index=False):
            print(f"  {row.modality[:20]:20} {row.column[:24]:24} {row.decision:9} {row.reason}")
    return 0
