"""Bundled examples: built from installed packages, split into modalities, missing values kept."""

import numpy as np
import pytest

from mmcrl_core.errors import UserInputError
from mmcrl_core.examples import list_examples, load_example
from mmcrl_core.preprocessing import Preprocessor


def test_nhefs_has_its_modalities_subjects_and_missing_values():
    tables = load_example("nhefs")
    assert len(tables.modalities) >= 4
    assert {"demographics", "body", "blood", "lifestyle", "medical_history"} <= set(tables.modalities)
    assert len(tables.subject_ids("mask")) == 1629
    summary = tables.summary().set_index("modality")
    assert (summary["subjects"] == 1629).all()
    # missing values are reported, not dropped: e.g. 1982 weight and blood pressure
    assert summary.loc["body", "missing_cells"] == 126 and summary.loc["blood", "missing_cells"] == 174
    assert summary["missing_pct"].sum() > 0
    assert tables.tables["body"]["wt82"].isna().sum() == 63
    assert {"qsmk", "death", "age", "sex"} <= set(tables.covariates.columns)
    assert "qsmk" not in {c for frame in tables.tables.values() for c in frame.columns}


def test_nhefs_missing_codes_become_missing_and_complete_cases_are_fewer():
    tables = load_example("nhefs")
    assert tables.tables["medical_history"]["diabetes"].isna().sum() == 791  # code 2 = not recorded
    assert len(tables.subject_ids("complete")) == 1629  # every subject is in every modality
    pre = Preprocessor.fit(tables.tables, tables.subject_ids()[:1200])
    _, arrays = pre.transform(tables.tables)
    assert all(a.shape[0] == 1629 for a in arrays.values())
    assert np.isnan(arrays["body"]).any()  # masked later, never imputed here


@pytest.mark.parametrize("name, modalities, n", [
    ("diabetes", ["demographics", "body", "serum"], 442),
    ("linnerud", ["exercise", "physiology"], 20),
])
def test_scikit_learn_examples(name, modalities, n):
    tables = load_example(name)
    assert tables.modalities == modalities and len(tables.subject_ids("complete")) == n


def test_examples_are_listed_with_titles_and_simulated_settings_load():
    examples = {e.name: e for e in list_examples()}
    assert {"nhefs", "diabetes", "linnerud"} <= set(examples)
    assert all(e.title and e.description for e in examples.values())
    simulated = [name for name in examples if name.startswith("sim_")]
    if simulated:  # present when mmcrl_core.simulate is
        tables = load_example("sim_tiny")
        assert tables.modalities == ["m1", "m2"] and len(tables.subject_ids()) == 1000
    with pytest.raises(UserInputError, match="unknown example"):
        load_example("nope")


def test_example_fingerprints_are_stable():
    assert load_example("linnerud").fingerprint() == load_example("linnerud").fingerprint()
