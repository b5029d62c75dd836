"""Generated latent descriptions, renaming and the labels.json shape other tools read."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mmcrl_core.errors import UserInputError
from mmcrl_core.labels import describe_latent, display_name, load_labels, save_labels, update_label
from mmcrl_core.runfolder import read_labels

ASSOCIATIONS = pd.DataFrame({
    "latent": ["sleep:1"] * 4 + ["sleep:2"],
    "phenotype": ["odi", "ahi", "spo2_min", "bmi", "odi"],
    "rho": [0.6, 0.4, -0.5, 0.05, 0.02],
    "q": [1e-9, 1e-5, 1e-7, 0.4, 0.9],
})
DRIVEN = pd.DataFrame({"latent": ["sleep:1", "sleep:1", "sleep:2"], "feature": ["odi", "hr", "hr"],
                       "rank": [1, 2, 1]})


def test_description_names_rising_falling_and_driven_features():
    text = describe_latent("sleep:1", ASSOCIATIONS, DRIVEN)
    assert text.startswith("sleep:1 rises with odi (rho +0.60), ahi (rho +0.40); falls with spo2_min")
    assert "bmi" not in text  # not significant
    assert "Drives mostly odi, hr." in text
    assert "no phenotype is associated" in describe_latent("sleep:2", ASSOCIATIONS, DRIVEN)


def test_labels_round_trip_rename_and_keep_other_entries(tmp_path):
    labels = load_labels(tmp_path, ["sleep:1", "sleep:2"], ASSOCIATIONS, DRIVEN)
    assert labels["sleep:1"]["label"] == "sleep:1" and "rises with odi" in labels["sleep:1"]["description"]
    save_labels(tmp_path, labels)
    update_label(tmp_path, "sleep:1", label="Desaturation\n<b>", notes="check with clinicians")
    stored = json.loads((tmp_path / "labels.json").read_text())
    assert set(stored) == {"sleep:1", "sleep:2"}
    assert set(stored["sleep:1"]) == {"label", "description", "notes"}
    assert stored["sleep:1"]["label"] == "Desaturation <b>"  # one line; escaping is the renderer's job
    assert stored["sleep:1"]["notes"] == "check with clinicians"
    assert "rises with odi" in stored["sleep:1"]["description"]
    assert display_name("sleep:1", read_labels(tmp_path)) == "Desaturation <b> (sleep:1)"
    assert display_name("sleep:2", read_labels(tmp_path)) == "sleep:2"
    # an empty label means "not renamed"
    update_label(tmp_path, "sleep:1", label="  ")
    assert read_labels(tmp_path)["sleep:1"]["label"] == "sleep:1"
    with pytest.raises(UserInputError, match="label"):
        update_label(tmp_path, "sleep:1", label="x" * 500)
