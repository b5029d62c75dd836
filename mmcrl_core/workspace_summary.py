"""What the workspace holds, for the landing page and the sidebar (read-only, cheap)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .store import connect
from .workspace import WorkspacePaths, default_paths


@dataclass
class WorkspaceSummary:
    root: str
    datasets: list[dict] = field(default_factory=list)  # id, name, n_subjects, created_at
    runs: list[dict] = field(default_factory=list)  # id, name, status, dataset_id, created_at

    def runs_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        return counts


def summarise(paths: WorkspacePaths | None = None) -> WorkspaceSummary:
    paths = paths or default_paths()
    with connect(paths) as conn:
        datasets = [
            dict(row)
            for row in conn.execute(
                "SELECT id, name, n_subjects, created_at FROM datasets ORDER BY created_at DESC"
            )
        ]
        runs = [
            dict(row)
            for row in conn.execute(
                "SELECT id, name, status, dataset_id, created_at FROM runs "
                "WHERE kind = 'train' ORDER BY created_at DESC"
            )
        ]
    return WorkspaceSummary(root=str(paths.root), datasets=datasets, runs=runs)
