"""Shared fixtures: every test gets its own workspace (MMCRL_HOME) so nothing touches the repo's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Small models train fastest on one thread, and tests share a 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty workspace; returns its WorkspacePaths."""
    from mmcrl_core.workspace import WorkspacePaths

    home = tmp_path / "workspace"
    monkeypatch.setenv("MMCRL_HOME", str(home))
    return WorkspacePaths(home).ensure()
