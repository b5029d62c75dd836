"""The workspace registry: one SQLite file (WAL mode) shared by the app and training processes.

This module owns the connection and the schema only. Dataset operations live in
dataset_store.py and run operations in run_store.py, both on top of `connect`.

Why WAL and short transactions: the app reads while several training processes write progress;
WAL lets readers proceed during a write and busy_timeout makes writers wait instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .workspace import WorkspacePaths, default_paths

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,          -- sha256 over the sorted source sha256s + settings
    n_subjects    INTEGER NOT NULL,
    modalities    TEXT NOT NULL,          -- JSON: [{name, columns, n_subjects, missing_pct}]
    sources       TEXT NOT NULL,          -- JSON: [{file, sha256, modality}]
    meta          TEXT NOT NULL DEFAULT '{}',
    folder        TEXT NOT NULL           -- relative to the workspace data/ folder
);
CREATE INDEX IF NOT EXISTS datasets_fingerprint ON datasets(fingerprint);

CREATE TABLE IF NOT EXISTS runs (
    id            TEXT PRIMARY KEY,
    name          TEXT,
    dataset_id    TEXT,
    group_id      TEXT,
    kind          TEXT NOT NULL DEFAULT 'train',   -- train | benchmark
    status        TEXT NOT NULL,                   -- queued | running | succeeded | failed | cancelled
    executor      TEXT NOT NULL DEFAULT 'local',
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    heartbeat_at  TEXT,
    pid           INTEGER,
    device        TEXT,
    spec          TEXT NOT NULL,                   -- RunSpec JSON
    command       TEXT,                            -- JSON argv
    out_dir       TEXT NOT NULL,
    log_path      TEXT,
    error         TEXT,
    val_loss      REAL,
    metrics       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_group ON runs(group_id);

CREATE TABLE IF NOT EXISTS run_progress (
    run_id        TEXT NOT NULL,
    epoch         INTEGER NOT NULL,
    at            TEXT NOT NULL,
    payload       TEXT NOT NULL,                   -- JSON progress event
    PRIMARY KEY (run_id, epoch)
);
"""


# Columns added after a table was first created: (table, column, SQL type and default). Applied by
# `open_connection` with ALTER TABLE when missing, so older workspaces keep working. Add, never remove.
ADDED_COLUMNS: list[tuple[str, str, str]] = [
    ("runs", "supervisor_pid", "INTEGER"),  # the `jobs supervise` process watching the training child
    ("runs", "exit_code", "INTEGER"),  # training process exit status (negative: killed by signal)
    ("runs", "cancel_requested_at", "TEXT"),  # set by cancel; the run ends as cancelled
    ("runs", "threads", "INTEGER"),  # torch / OpenMP threads given to the training process
]


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, sql_type in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_connection(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    _add_missing_columns(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


@contextmanager
def connect(paths: WorkspacePaths | None = None) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to the workspace registry; closed on exit."""
    paths = paths or default_paths()
    conn = open_connection(paths.registry_path)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error, so writers never interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
