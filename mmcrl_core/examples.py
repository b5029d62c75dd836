"""Example datasets, built from installed packages (no download), ready in one click.

  nhefs      NHEFS (causaldata): 1,629 smokers followed 1971-1982, split into five modalities;
             its missing values are kept (weights in 1982, blood pressure, cholesterol...)
  diabetes   scikit-learn's diabetes: demographics, body, serum; disease progression as covariate
  linnerud   scikit-learn's linnerud: exercise vs physiology (20 subjects)
  sim_<s>    the paper's simulated settings (mmcrl_core.simulate), when that module is present

Each example's sha256 is computed from its content, so storing it twice is recognised.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .config import DataSource
from .datasets import MultimodalTables
from .errors import UserInputError

NHEFS_MODALITIES = {
    "demographics": ["sex", "age", "race", "income", "marital", "school", "education"],
    "body": ["ht", "wt71", "wt82", "wt82_71"],
    "blood": ["sbp", "dbp", "cholesterol"],
    "lifestyle": ["smokeintensity", "smokeyrs", "smkintensity82_71", "alcoholpy", "alcoholfreq", "alcoholtype",
                  "alcoholhowmuch", "active", "exercise"],
    "medical_history": ["asthma", "bronch", "tb", "hf", "hbp", "pepticulcer", "colitis", "hepatitis",
                        "chroniccough", "hayfever", "diabetes", "polio", "tumor", "nervousbreak", "pica",
                        "headache", "otherpain", "weakheart", "allergies", "nerves", "lackpep", "hbpmed",
                        "boweltrouble", "wtloss", "infection"],
}
# NHEFS codes "not asked / unknown" as a number (codebook); these become missing values, so they are
# reported as missing rather than learned as a level.
NHEFS_MISSING_CODES = {"hbp": 2, "diabetes": 2, "pica": 2, "hbpmed": 2, "boweltrouble": 2, "alcoholfreq": 5,
                       "marital": 8}
# Nominal codes (marital status, drink type): categories, so they are one-hot encoded.
NHEFS_NOMINAL = ["marital", "alcoholtype"]
# Kept apart for association tests: the treatment (quitting smoking), outcomes and basic traits.
NHEFS_COVARIATES = ["qsmk", "death", "yrdth", "age", "sex", "race"]
# Small enough to train on in minutes on a laptop; the paper's own sizes are a parameter away.
SIMULATED_SETTINGS = {"tiny": 1_000, "case1": 5_000, "case2": 5_000, "case3": 5_000}


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    description: str
    build: Callable[[], MultimodalTables]


def _content_sha256(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


def _tables(name: str, tables: dict[str, pd.DataFrame], id_column: str,
            covariates: pd.DataFrame | None = None) -> MultimodalTables:
    for frame in [*tables.values(), *([covariates] if covariates is not None else [])]:
        frame.index = pd.Index(frame.index.map(str), name=id_column, dtype=object)
    return MultimodalTables(
        tables=tables, id_column=id_column, sha256={m: _content_sha256(f) for m, f in tables.items()},
        covariates=covariates, covariates_sha256=_content_sha256(covariates) if covariates is not None else None,
        sources=[DataSource(modality=m, path=f"example:{name}/{m}") for m in tables],
    )


def _nhefs() -> MultimodalTables:
    from causaldata import nhefs

    data = nhefs.load_pandas().data.copy()
    data.index = data["seqn"].astype("int64")
    for column, code in NHEFS_MISSING_CODES.items():
        data[column] = data[column].mask(data[column] == code)
    for column in NHEFS_NOMINAL:
        data[column] = data[column].astype("Int64").astype("category")
    tables = {m: data[cols].copy() for m, cols in NHEFS_MODALITIES.items()}
    return _tables("nhefs", tables, "seqn", data[NHEFS_COVARIATES].copy())


def _diabetes() -> MultimodalTables:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    tables = {
        "demographics": frame[["age", "sex"]].copy(),
        "body": frame[["bmi", "bp"]].copy(),
        "serum": frame[["s1", "s2", "s3", "s4", "s5", "s6"]].copy(),
    }
    covariates = frame[["target"]].rename(columns={"target": "disease_progression"})
    return _tables("diabetes", tables, "subject_id", covariates)


def _linnerud() -> MultimodalTables:
    from sklearn.datasets import load_linnerud

    bunch = load_linnerud(as_frame=True)
    exercise, physiology = bunch.data.copy(), bunch.target.copy()
    exercise.index = physiology.index = pd.RangeIndex(1, len(exercise) + 1)
    return _tables("linnerud", {"exercise": exercise, "physiology": physiology}, "subject_id")


def _simulated(setting: str) -> Callable[[], MultimodalTables]:
    def build() -> MultimodalTables:
        simulate = importlib.import_module("mmcrl_core.simulate")
        data = simulate.simulate(setting, seed=0, n=SIMULATED_SETTINGS[setting])
        tables = {m: frame.copy() for m, frame in data.observed.items()}
        return _tables(f"sim_{setting}", tables, "subject_id")

    return build


def _simulation_available() -> bool:
    try:
        importlib.import_module("mmcrl_core.simulate")
    except ImportError:
        return False
    return True


def _registry() -> dict[str, Example]:
    examples = [
        Example("nhefs", "NHEFS smoking cessation cohort",
                "1,629 adults (causaldata): demographics, body measures, blood pressure and cholesterol, lifestyle, "
                "medical history; missing values kept. Covariates: quitting smoking, death, age, sex, race.",
                _nhefs),
        Example("diabetes", "Diabetes (scikit-learn)",
                "442 patients: demographics, body (BMI, blood pressure), six serum measurements; disease progression "
                "after one year as covariate.", _diabetes),
        Example("linnerud", "Linnerud (scikit-learn)",
                "20 middle-aged men: exercise (chins, sit-ups, jumps) vs physiology (weight, waist, pulse).",
                _linnerud),
    ]
    if _simulation_available():
        for setting, n in SIMULATED_SETTINGS.items():
            examples.append(Example(f"sim_{setting}", f"Simulated: paper setting {setting}",
                                    f"{n:,} simulated subjects from the paper's generative process (seed 0); the "
                                    "true latents and graph are known.", _simulated(setting)))
    return {e.name: e for e in examples}


def list_examples() -> list[Example]:
    return list(_registry().values())


def load_example(name: str) -> MultimodalTables:
    registry = _registry()
    if name not in registry:
        raise UserInputError(f"unknown example {name!r}; examples: {', '.join(registry)}")
    try:
        return registry[name].build()
    except ImportError as exc:
        raise UserInputError(f"example {name!r} needs the package {exc.name!r}, which is not installed") from None
