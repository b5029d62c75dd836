"""Small helpers shared by the jobs and page tests: a tiny stored dataset and quick waits."""

from __future__ import annotations

import time

from mmcrl_core import dataset_store
from mmcrl_core.run_setup import build_spec
from mmcrl_core.workspace import WorkspacePaths

# small enough that a real `train` takes seconds: 20 subjects, 2 modalities of 3 columns
TINY_MODEL = {"hidden": 16, "depth": 1}


def tiny_dataset(paths: WorkspacePaths):
    return dataset_store.save_example("linnerud", paths)


def tiny_spec(paths: WorkspacePaths, dataset=None, epochs: int = 3, seed: int = 0, latents: int = 2, name=None):
    dataset = dataset or tiny_dataset(paths)
    return build_spec(
        dataset, paths, latents={m: latents for m in dataset.modality_names}, nuisance={},
        model=TINY_MODEL, train={"epochs": epochs, "seed": seed, "device": "cpu"}, name=name,
    )


def wait_for(predicate, timeout: float = 30, poll: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached in {timeout}s")
