"""A small, syntactically correct run folder with hostile labels, for the graph / stability tests.

The latents follow a known graph (sleep precedes retina):
  sleep:1 -> sleep:3, sleep:1 -> retina:1, sleep:2 -> retina:2, and phenotypes age -> sleep:1,
  sex -> retina:2, sleep:2 -> "bmi <&>".
Different seeds share the same underlying subjects and truth, but rename latents inside a
modality, flip signs and add noise, as real seeds do; `drop_edges` leaves some edges out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmcrl_core import runfolder as rf
from mmcrl_core.config import DataSource, ModalitySpec, ModelConfig, RunSpec, TrainConfig

HOSTILE = '<script>alert(1)</script> "quoted" & ü'
HOSTILE_DATASET = 'ds "q" & <b>ünï</b>'
LATENTS = ["sleep:1", "sleep:2", "sleep:3", "retina:1", "retina:2"]
TRUE_EDGES = [("sleep:1", "sleep:3"), ("sleep:1", "retina:1"), ("sleep:2", "retina:2")]
PHENOTYPE_COLUMNS = ["age", "sex", "bmi <&>"]


def _truth(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(12345)
    age = rng.uniform(20, 80, n)
    sex = rng.integers(0, 2, n)
    z = {}
    z["sleep:1"] = 0.04 * (age - 50) + rng.normal(size=n)
    z["sleep:2"] = rng.normal(size=n)
    z["sleep:3"] = 0.9 * z["sleep:1"] + 0.6 * rng.normal(size=n)
    z["retina:1"] = 0.9 * z["sleep:1"] + 0.6 * rng.normal(size=n)
    z["retina:2"] = 0.8 * z["sleep:2"] + 1.0 * (sex - 0.5) + 0.6 * rng.normal(size=n)
    ids = pd.Index([f"S{i:04d}" for i in range(n)], name="subject_id")
    latents = pd.DataFrame(z, index=ids)[LATENTS]
    bmi = 25 + 2.0 * z["sleep:2"] + rng.normal(size=n)
    phenotypes = pd.DataFrame({"age": age, "sex": np.where(sex == 1, "F", "M"), "bmi <&>": bmi}, index=ids)
    return latents, phenotypes


def make_run_folder(
    out: Path,
    *,
    run_id: str = "run-hostile",
    seed: int = 0,
    n: int = 400,
    permutation: dict[str, str] | None = None,
    drop_edges: tuple[tuple[str, str], ...] = (),
    group_id: str = "",
    with_labels: bool = True,
) -> Path:
    """Write a run folder at `out`; `permutation` maps true latent -> this run's name for it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rename = {name: name for name in LATENTS} | (permutation or {})
    truth, phenotypes = _truth(n)

    latents = pd.DataFrame(index=truth.index)
    for name in LATENTS:
        sign = -1.0 if rng.random() < 0.5 else 1.0
        latents[rename[name]] = sign * truth[name] + 0.2 * rng.normal(size=n)
    latents = latents[LATENTS]
    latents.reset_index().to_csv(out / rf.LATENTS, index=False)

    order = {"sleep": 0, "retina": 1}
    strengths = pd.DataFrame(0.0, index=LATENTS, columns=LATENTS)
    for parent in LATENTS:
        for child in LATENTS:
            if parent != child and order[parent.split(":")[0]] <= order[child.split(":")[0]]:
                strengths.at[parent, child] = round(float(rng.uniform(0.01, 0.1)), 4)
    for parent, child in TRUE_EDGES:
        if (parent, child) not in drop_edges:
            strengths.at[rename[parent], rename[child]] = round(float(rng.uniform(0.7, 1.0)), 4)
    strengths.to_csv(out / rf.EDGE_STRENGTHS)
    threshold = 0.25 * float(strengths.to_numpy().max())
    adjacency = strengths.where(strengths > threshold, 0.0)
    adjacency.to_csv(out / rf.ADJACENCY)
    rows = [
        {"source": p, "target": c, "weight": adjacency.at[p, c],
         "cross_modal": p.split(":")[0] != c.split(":")[0], "support": 1.0}
        for p in LATENTS for c in LATENTS if adjacency.at[p, c] > 0
    ]
    pd.DataFrame(rows, columns=rf.EDGE_COLUMNS).to_csv(out / rf.EDGES, index=False)

    phenotypes.reset_index().to_csv(out / "phenotypes.csv", index=False)
    spec = RunSpec(
        run_id=run_id,
        dataset_id=HOSTILE_DATASET,
        group_id=group_id or None,
        id_column="subject_id",
        # the phenotypes play the run's data source, so "phenotypes of the run's dataset" works
        sources=[DataSource(modality="clinical", path=str((out / "phenotypes.csv").resolve()))],
        modalities=[ModalitySpec(name="sleep", latents=3), ModalitySpec(name="retina", latents=2)],
        model=ModelConfig(causal_order=["sleep", "retina"]),
        train=TrainConfig(seed=seed, epochs=1),
    )
    manifest = {
        "run_id": run_id,
        "status": "succeeded",
        "spec": spec.model_dump(mode="json"),
        "dataset_id": HOSTILE_DATASET,
        "group_id": group_id,
        "config_hash": spec.config_hash(),
        "seed": seed,
        # as run_writer wrote it before edge_threshold (runs saved then must keep loading): a threshold
        # relative to the strongest edge
        "graph_readout": {"rule": "strength > 0.25 x strongest edge", "threshold": 0.25, "kind": "relative"},
    }
    rf.write_json(out / rf.MANIFEST, manifest)
    if with_labels:
        labels = {
            "sleep:1": {"label": HOSTILE, "description": "desc with <img src=x onerror=alert(2)> & \"q\""},
            "retina:1": {"label": "Rétine ‘vessels’ & <i>", "description": "non-ASCII: 視網膜"},
        }
        (out / rf.LABELS).write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    return out


def seed_group(root: Path, seeds: int = 3, group_id: str = "grp-1", drop_in_last: tuple = ()) -> list[Path]:
    """Several seeds of the same model; later seeds permute latents inside each modality."""
    permutations = [
        {},
        {"sleep:1": "sleep:2", "sleep:2": "sleep:3", "sleep:3": "sleep:1"},
        {"retina:1": "retina:2", "retina:2": "retina:1", "sleep:1": "sleep:3", "sleep:3": "sleep:1"},
    ]
    runs = []
    for seed in range(seeds):
        drop = drop_in_last if seed == seeds - 1 else ()
        runs.append(
            make_run_folder(root / f"run-s{seed}", run_id=f"run-s{seed}", seed=seed,
                            permutation=permutations[seed % len(permutations)], drop_edges=drop,
                            group_id=group_id)
        )
    return runs
