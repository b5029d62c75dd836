"""A small finished run folder with planted latent <-> phenotype associations, for the latent browser.

Truth: sleep:1 drives odi and ahi up and spo2_min down; retina:1 rises with age (a covariate);
sleep:2 is associated with nothing. The data files live next to the run folder and the manifest's
spec.sources point at them, as after `python -m mmcrl_core train`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmcrl_core import runfolder as rf
from mmcrl_core.config import DataSource, ModalitySpec, RunSpec

LATENTS = ["sleep:1", "sleep:2", "retina:1"]


def make_latents_run(models_dir: Path, run_id: str = "run-latents", n: int = 300, seed: int = 7) -> Path:
    """Write data files and a complete run folder models_dir/run_id; returns the run folder."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in range(n)]
    age = rng.uniform(30, 80, n).round(1)
    sex = rng.choice(["F", "M"], n)
    z_sleep1 = rng.normal(size=n)
    z_sleep2 = rng.normal(size=n)
    z_retina1 = 0.05 * (age - 55) + 0.5 * rng.normal(size=n)
    sleep = pd.DataFrame({
        "subject_id": ids,
        "odi": 10 + 4 * z_sleep1 + rng.normal(size=n),
        "ahi": 12 + 3 * z_sleep1 + 2 * rng.normal(size=n),
        "spo2_min": 90 - 2 * z_sleep1 + rng.normal(size=n),
        "snoring": rng.integers(0, 2, n),
        "noise_sleep": rng.normal(size=n),
    })
    sleep.loc[rng.choice(n, n // 10, replace=False), "ahi"] = np.nan  # missing cells: pairwise n
    retina = pd.DataFrame({
        "subject_id": ids,
        "vessel_width": 5 + z_retina1 + 0.5 * rng.normal(size=n),
        "cup_disc": rng.normal(size=n),
        "eye": rng.choice(["left", "right"], n),
    })
    covariates = pd.DataFrame({"subject_id": ids, "age": age, "sex": sex})

    data_dir = Path(models_dir).parent / "data" / f"{run_id}-inputs"
    data_dir.mkdir(parents=True, exist_ok=True)
    sleep.to_csv(data_dir / "sleep.csv", index=False)
    retina.to_csv(data_dir / "retina.csv", index=False)
    covariates.to_csv(data_dir / "covariates.csv", index=False)

    spec = RunSpec(
        run_id=run_id,
        name="fixture run",
        id_column="subject_id",
        sources=[DataSource(modality="sleep", path=str(data_dir / "sleep.csv")),
                 DataSource(modality="retina", path=str(data_dir / "retina.csv"))],
        modalities=[ModalitySpec(name="sleep", latents=2, columns=list(sleep.columns[1:])),
                    ModalitySpec(name="retina", latents=1, columns=list(retina.columns[1:]))],
    )
    out = Path(models_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    latents = pd.DataFrame({"subject_id": ids, "sleep:1": z_sleep1 + 0.1 * rng.normal(size=n),
                            "sleep:2": z_sleep2, "retina:1": z_retina1})
    latents.to_csv(out / rf.LATENTS, index=False)
    adjacency = pd.DataFrame(0.0, index=LATENTS, columns=LATENTS)
    adjacency.loc["sleep:1", "retina:1"] = 0.4
    adjacency.to_csv(out / rf.ADJACENCY)
    pd.DataFrame([{"source": "sleep:1", "target": "retina:1", "weight": 0.4, "cross_modal": True,
                   "support": 1.0}]).to_csv(out / rf.EDGES, index=False)
    manifest = {"run_id": run_id, "status": "succeeded", "spec": spec.model_dump(mode="json"),
                "seed": 0, "metrics": {}}
    (out / rf.MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out
