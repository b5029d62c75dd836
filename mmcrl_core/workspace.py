"""Where the workspace lives: the SQLite registry, datasets under data/, runs under models/.

The default workspace is the repository folder itself (data/ and models/ next to app.py), so a
fresh clone works with no setup. MMCRL_HOME moves all of it at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class WorkspacePaths:
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def benchmarks_dir(self) -> Path:
        return self.root / "models" / "benchmarks"

    @property
    def registry_path(self) -> Path:
        return self.root / "data" / "registry.sqlite"

    def ensure(self) -> WorkspacePaths:
        for folder in (self.data_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def workspace_root() -> Path:
    return Path(os.environ.get("MMCRL_HOME", REPO_ROOT)).expanduser().resolve()


def default_paths() -> WorkspacePaths:
    return WorkspacePaths(workspace_root()).ensure()
