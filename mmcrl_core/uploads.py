"""Uploaded bytes -> a file on disk the readers can open, under a safe name.

The app receives uploads in memory; the readers work on paths (and hash files), so each upload is
written once to a staging folder named by its content hash. File names from the browser are
sanitised: no folders, no leading dots, only tame characters.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from .problems import Problem, error
from .readers import TABLE_SUFFIXES, max_upload_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]+")


def safe_filename(name: str) -> str:
    """'../../etc/pass wd.csv' -> 'pass wd.csv'; never empty, never hidden."""
    base = Path(str(name).replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).strip(" .") or "upload"
    return base[:120]


def staging_root() -> Path:
    return Path(tempfile.gettempdir()) / "mmcrl-uploads"


def stage_upload(name: str, data: bytes, root: Path | None = None) -> tuple[Path | None, Problem | None]:
    """Write one upload to <root>/<sha256 prefix>/<safe name>; (path, None) or (None, the problem)."""
    filename = safe_filename(name)
    if len(data) > max_upload_bytes():
        return None, error(filename, f"file is {len(data) / 1e6:.1f} MB, over the {max_upload_bytes() / 1e6:.0f} MB cap",
                           "split it into modalities, save it as Parquet, or raise MMCRL_MAX_UPLOAD_MB")
    if Path(filename).suffix.lower() not in TABLE_SUFFIXES:
        return None, error(filename, "unsupported file type",
                           "upload CSV, TSV, TXT, Parquet or Excel (.xlsx) tables")
    digest = hashlib.sha256(data).hexdigest()[:24]
    folder = (root or staging_root()) / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if not path.is_file() or path.stat().st_size != len(data):
        tmp = folder / f".{filename}.partial"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path, None
