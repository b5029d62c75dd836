"""From what the user chose on the Train page to RunSpecs: a dataset, latents (or a grid), seeds.

Kept out of the page so the same choices can be tested and scripted without Streamlit.
"""

from __future__ import annotations

import itertools
import re

from pydantic import ValidationError

from .config import ModalitySpec, ModelConfig, RunSpec, TrainConfig
from .dataset_store import DatasetRecord, dataset_sources
from .errors import UserInputError
from .workspace import WorkspacePaths

MAX_GRID_RUNS = 64


def parse_int_list(
    text: str, what: str, low: int = 0, high: int | None = None, max_count: int | None = None
) -> list[int]:
    """'0, 1, 2' or '0-4' -> [0, 1, 2] / [0, 1, 2, 3, 4]; a clear error otherwise.

    max_count guards against a typo such as '0-100' silently queueing a hundred runs."""
    values: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        match = re.fullmatch(r"(-?\d+)\s*(?:-|\.\.)\s*(-?\d+)", part)
        try:
            if match:
                start, stop = int(match.group(1)), int(match.group(2))
                if stop < start:
                    raise ValueError
                values.extend(range(start, stop + 1))
            else:
                values.append(int(part))
        except ValueError:
            raise UserInputError(
                f"{what}: {part!r} is not a whole number or a range; write e.g. 0, 1, 2 or 0-4"
            ) from None
    if not values:
        raise UserInputError(f"{what}: give at least one whole number, e.g. 0 or 0, 1, 2")
    for value in values:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise UserInputError(f"{what}: {value} must be {bound}")
    values = list(dict.fromkeys(values))
    if max_count is not None and len(values) > max_count:
        raise UserInputError(
            f"{what}: {len(values)} values given; at most {max_count} here "
            "(for larger sweeps use `python -m mmcrl_core sweep`)"
        )
    return values


def latent_grid(choices: dict[str, list[int]]) -> list[dict[str, int]]:
    """Every combination of latents per modality (modality -> list of latent counts)."""
    names = list(choices)
    grid = [dict(zip(names, combo)) for combo in itertools.product(*(choices[n] for n in names))]
    if len(grid) > MAX_GRID_RUNS:
        raise UserInputError(
            f"the latent grid has {len(grid)} combinations; keep it at {MAX_GRID_RUNS} or fewer"
        )
    return grid


def build_spec(
    dataset: DatasetRecord,
    paths: WorkspacePaths,
    *,
    latents: dict[str, int],
    nuisance: dict[str, int],
    model: dict | None = None,
    train: dict | None = None,
    causal_order: list[str] | None = None,
    name: str | None = None,
) -> RunSpec:
    """A RunSpec for a stored dataset; pydantic's complaints become one clear UserInputError."""
    names = dataset.modality_names
    if causal_order is not None and sorted(causal_order) != sorted(names):
        missing = [n for n in names if n not in causal_order]
        raise UserInputError(
            f"the causal order must list every modality once; missing: {', '.join(missing) or 'none'}"
        )
    try:
        return RunSpec(
            name=(name or "").strip() or None,
            dataset_id=dataset.id,
            id_column=dataset.id_column,
            sources=dataset_sources(dataset.id, paths),
            modalities=[
                ModalitySpec(name=m, latents=int(latents[m]), nuisance=int(nuisance.get(m, 1))) for m in names
            ],
            model=ModelConfig(**{**(model or {}), "causal_order": causal_order}),
            train=TrainConfig(**(train or {})),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UserInputError(f"the run settings are not valid: {problems}") from None
