"""Datasets in the workspace: Parquet files under data/<id>/ and a row in the SQLite registry.

    save_dataset(tables, name) -> DatasetRecord      identical re-uploads return the stored one
    list_datasets() / get_dataset(id) / rename_dataset(id, name) / delete_dataset(id)
    load_dataset(id) -> MultimodalTables             dataset_sources(id) -> [DataSource] for `train`

Files: data/<id>/<modality>.parquet (id column first, then the raw columns) and covariates.parquet.
A save writes into a hidden staging folder and renames it into place before the registry row is
added, so a failed save leaves no half dataset and never touches the others.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config import DataSource
from .datasets import MultimodalTables, load_tables
from .errors import UserInputError
from .readers import sha256_file
from .store import connect, transaction, utc_now
from .workspace import WorkspacePaths, default_paths

COVARIATES_FILE = "covariates.parquet"
DEFAULT_EXAMPLE_MARKER = ".default_example_done"
MAX_NAME_LENGTH = 120


@dataclass
class DatasetRecord:
    id: str
    name: str
    created_at: str
    fingerprint: str
    n_subjects: int
    modalities: list[dict]  # [{name, columns, n_subjects, missing_pct}]
    sources: list[dict]  # [{file, sha256, modality}]
    meta: dict = field(default_factory=dict)
    folder: str = ""
    reused: bool = False  # save_dataset found an identical stored dataset instead of writing one

    @property
    def modality_names(self) -> list[str]:
        return [m["name"] for m in self.modalities]

    @property
    def id_column(self) -> str:
        return self.meta.get("id_column", "subject_id")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> DatasetRecord:
        return cls(
            id=row["id"], name=row["name"], created_at=row["created_at"], fingerprint=row["fingerprint"],
            n_subjects=row["n_subjects"], modalities=json.loads(row["modalities"]),
            sources=json.loads(row["sources"]), meta=json.loads(row["meta"] or "{}"), folder=row["folder"],
        )


def _paths(paths: WorkspacePaths | None) -> WorkspacePaths:
    return (paths or default_paths()).ensure()


def _clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise UserInputError("give the dataset a name")
    if len(name) > MAX_NAME_LENGTH:
        raise UserInputError(f"dataset name is {len(name)} characters; use at most {MAX_NAME_LENGTH}")
    return name


def _modality_file(modality: str) -> str:
    # Modality names are validated (letters, digits, space, _ - .) and never start with '.', so they
    # are safe file names; the check guards against callers that skipped validation.
    if "/" in modality or "\\" in modality or modality.startswith(".") or not modality:
        raise UserInputError(f"modality name {modality!r} cannot be used as a file name")
    return f"{modality}.parquet"


def _to_parquet(frame: pd.DataFrame, id_column: str, path: Path) -> None:
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    out.index = pd.Index(out.index.astype(str), name=id_column)
    out.reset_index().to_parquet(path, index=False)


def _describe(tables: MultimodalTables) -> list[dict]:
    summary = tables.summary().set_index("modality")
    return [
        {"name": name, "columns": [str(c) for c in frame.columns], "n_subjects": int(len(frame)),
         "missing_pct": float(summary.loc[name, "missing_pct"])}
        for name, frame in tables.tables.items()
    ]


# -------------------------------------------------------------------------------------- reads


def list_datasets(paths: WorkspacePaths | None = None) -> list[DatasetRecord]:
    with connect(_paths(paths)) as conn:
        rows = conn.execute("SELECT * FROM datasets ORDER BY created_at DESC, name").fetchall()
    return [DatasetRecord.from_row(r) for r in rows]


def datasets_frame(paths: WorkspacePaths | None = None) -> pd.DataFrame:
    """The dataset list as a table for the app."""
    rows = [
        {"id": d.id, "name": d.name, "subjects": d.n_subjects, "modalities": ", ".join(d.modality_names),
         "created": d.created_at, "example": d.meta.get("example") or ""}
        for d in list_datasets(paths)
    ]
    return pd.DataFrame(rows, columns=["id", "name", "subjects", "modalities", "created", "example"])


def get_dataset(dataset_id: str, paths: WorkspacePaths | None = None) -> DatasetRecord:
    with connect(_paths(paths)) as conn:
        row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
    if row is None:
        raise UserInputError(f"no dataset {dataset_id!r} in this workspace")
    return DatasetRecord.from_row(row)


def find_by_fingerprint(fingerprint: str, paths: WorkspacePaths | None = None) -> DatasetRecord | None:
    with connect(_paths(paths)) as conn:
        row = conn.execute("SELECT * FROM datasets WHERE fingerprint = ? ORDER BY created_at LIMIT 1",
                           (fingerprint,)).fetchone()
    return DatasetRecord.from_row(row) if row else None


def dataset_folder(record: DatasetRecord, paths: WorkspacePaths | None = None) -> Path:
    return _paths(paths).data_dir / record.folder


def dataset_sources(dataset_id: str, paths: WorkspacePaths | None = None) -> list[DataSource]:
    """Where the stored modality tables are (absolute paths), for `python -m mmcrl_core train`."""
    paths = _paths(paths)
    record = get_dataset(dataset_id, paths)
    folder = dataset_folder(record, paths)
    stored = record.meta.get("stored_sha256", {})
    return [
        DataSource(modality=m, path=str(folder / _modality_file(m)), sha256=stored.get(m))
        for m in record.modality_names
    ]


def covariates_path(dataset_id: str, paths: WorkspacePaths | None = None) -> Path | None:
    paths = _paths(paths)
    path = dataset_folder(get_dataset(dataset_id, paths), paths) / COVARIATES_FILE
    return path if path.is_file() else None


def load_dataset(dataset_id: str, paths: WorkspacePaths | None = None) -> MultimodalTables:
    paths = _paths(paths)
    record = get_dataset(dataset_id, paths)
    sources = dataset_sources(dataset_id, paths)
    lost = [s.path for s in sources if not Path(s.path).is_file()]
    if lost:
        raise UserInputError(f"dataset {record.name!r} is damaged: {', '.join(lost)} is missing; delete it and "
                             "upload the data again")
    covariates = covariates_path(dataset_id, paths)
    return load_tables(sources, record.id_column, covariates=str(covariates) if covariates else None)


# ------------------------------------------------------------------------------------- writes


def save_dataset(tables: MultimodalTables, name: str, paths: WorkspacePaths | None = None,
                 meta: dict | None = None) -> DatasetRecord:
    """Store the tables; an identical dataset already stored is returned instead (reused=True)."""
    paths = _paths(paths)
    name = _clean_name(name)
    fingerprint = tables.fingerprint()
    existing = find_by_fingerprint(fingerprint, paths)
    if existing is not None:
        existing.reused = True
        return existing
    with connect(paths) as conn:
        if conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
            raise UserInputError(f"a dataset named {name!r} already exists; choose another name")
    for modality in tables.tables:
        _modality_file(modality)

    dataset_id = f"ds-{uuid.uuid4().hex[:10]}"
    final = paths.data_dir / dataset_id
    staging = paths.data_dir / f".{dataset_id}.partial-{uuid.uuid4().hex[:6]}"
    staging.mkdir(parents=True)
    try:
        stored_sha = {}
        for modality, frame in tables.tables.items():
            target = staging / _modality_file(modality)
            _to_parquet(frame, tables.id_column, target)
            stored_sha[modality] = sha256_file(target)
        if tables.covariates is not None:
            _to_parquet(tables.covariates, tables.id_column, staging / COVARIATES_FILE)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    source_by_modality = {s.modality: s for s in tables.sources}
    sources = [
        {"modality": m, "file": Path(source_by_modality[m].path).name if m in source_by_modality else "",
         "sha256": sha}
        for m, sha in tables.sha256.items()
    ]
    if tables.covariates_sha256:
        sources.append({"modality": "covariates", "file": COVARIATES_FILE, "sha256": tables.covariates_sha256})
    full_meta = {
        "id_column": tables.id_column,
        "stored_sha256": stored_sha,
        "covariate_columns": [str(c) for c in tables.covariates.columns] if tables.covariates is not None else [],
        "n_subjects_complete": int(len(tables.subject_ids("complete"))),
        "warnings": [p.describe() for p in tables.problems][:50],
        **(meta or {}),
    }
    record = DatasetRecord(
        id=dataset_id, name=name, created_at=utc_now(), fingerprint=fingerprint,
        n_subjects=int(len(tables.subject_ids("mask"))), modalities=_describe(tables), sources=sources,
        meta=full_meta, folder=dataset_id,
    )
    try:
        with connect(paths) as conn, transaction(conn):
            conn.execute(
                "INSERT INTO datasets (id, name, created_at, fingerprint, n_subjects, modalities, sources, meta, "
                "folder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.name, record.created_at, record.fingerprint, record.n_subjects,
                 json.dumps(record.modalities), json.dumps(record.sources), json.dumps(record.meta, default=str),
                 record.folder),
            )
    except sqlite3.IntegrityError:
        shutil.rmtree(final, ignore_errors=True)
        raise UserInputError(f"a dataset named {name!r} already exists; choose another name") from None
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return record


def rename_dataset(dataset_id: str, new_name: str, paths: WorkspacePaths | None = None) -> DatasetRecord:
    paths = _paths(paths)
    new_name = _clean_name(new_name)
    get_dataset(dataset_id, paths)
    try:
        with connect(paths) as conn, transaction(conn):
            conn.execute("UPDATE datasets SET name = ? WHERE id = ?", (new_name, dataset_id))
    except sqlite3.IntegrityError:
        raise UserInputError(f"a dataset named {new_name!r} already exists; choose another name") from None
    return get_dataset(dataset_id, paths)


def delete_dataset(dataset_id: str, paths: WorkspacePaths | None = None) -> None:
    """Remove the registry row, then the files (a crash in between leaves only unused files).
    Refused while a run is training on the dataset: its process reads these files."""
    from .run_store import ACTIVE_STATUSES, list_runs

    paths = _paths(paths)
    record = get_dataset(dataset_id, paths)
    active = list_runs(paths, dataset_id=dataset_id, statuses=ACTIVE_STATUSES)
    if active:
        raise UserInputError(f"{len(active)} run(s) are training on {record.name!r} right now; wait for them to "
                             "finish or cancel them on the Runs page, then delete the dataset")
    with connect(paths) as conn, transaction(conn):
        conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
    folder = dataset_folder(record, paths)
    if record.folder and folder.parent == paths.data_dir and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def save_example(name: str, paths: WorkspacePaths | None = None) -> DatasetRecord:
    """Store a bundled example (see examples.py) under its title; stored once."""
    from .examples import list_examples, load_example

    titles = {e.name: e.title for e in list_examples()}
    tables = load_example(name)
    paths = _paths(paths)
    existing = find_by_fingerprint(tables.fingerprint(), paths)
    if existing is not None:
        existing.reused = True
        return existing
    title = titles.get(name, name)
    taken = {d.name for d in list_datasets(paths)}
    candidate, n = title, 2
    while candidate in taken:
        candidate, n = f"{title} ({n})", n + 1
    return save_dataset(tables, candidate, paths, meta={"example": name})


def ensure_default_example(paths: WorkspacePaths | None = None) -> str | None:
    """On a fresh workspace, store the NHEFS example (diabetes if causaldata is missing) once.

    Returns the stored dataset's name, or None when nothing was added (the workspace already has
    data, or the example was stored before and maybe deleted by the user on purpose)."""
    paths = _paths(paths)
    marker = paths.data_dir / DEFAULT_EXAMPLE_MARKER
    if marker.exists():
        return None
    added = None
    if not list_datasets(paths):
        for example in ("nhefs", "diabetes"):
            try:
                added = save_example(example, paths).name
                break
            except UserInputError:
                continue
    marker.write_text(utc_now() + "\n", encoding="utf-8")
    return added
