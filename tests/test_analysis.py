"""A run folder's latents against its phenotypes: loading, adjustment and the `associate` command."""

from __future__ import annotations

import pandas as pd
import pytest
from latents_run_fixture import make_latents_run

from mmcrl_core.analysis import associate_run, load_phenotypes
from mmcrl_core.cli import main
from mmcrl_core.runfolder import read_latents


@pytest.fixture
def run_dir(tmp_path):
    return make_latents_run(tmp_path / "models")


def test_phenotypes_are_all_numeric_and_binary_columns_of_every_modality(run_dir):
    latents = read_latents(run_dir)
    phenotypes = load_phenotypes(run_dir, latents)
    assert set(phenotypes.values.columns) == {"odi", "ahi", "spo2_min", "snoring", "noise_sleep",
                                              "vessel_width", "cup_disc", "eye"}
    assert phenotypes.sources["odi"] == "sleep" and phenotypes.sources["eye"] == "retina"
    assert phenotypes.coding["eye"] == "1 = right, 0 = left"
    assert list(phenotypes.values.index) == [str(i) for i in latents.index]


def test_planted_associations_of_the_fixture_run(run_dir):
    table = associate_run(run_dir).set_index(["latent", "phenotype"])
    assert table.loc[("sleep:1", "odi"), "rho"] > 0.5 and table.loc[("sleep:1", "odi"), "q"] < 1e-6
    assert table.loc[("sleep:1", "spo2_min"), "rho"] < -0.5
    assert table.loc[("sleep:1", "ahi"), "n"] == 270  # a tenth of ahi is missing: pairwise n
    assert table.loc[("sleep:1", "snoring"), "kind"] == "binary"
    assert (table.xs("sleep:2", level="latent")["q"] > 0.05).all()


def test_associate_command_writes_the_contract_columns_and_adjusts(run_dir, tmp_path, capsys):
    from mmcrl_core.labels import update_label

    update_label(run_dir, "retina:1", label="Vessel age")
    covariates = run_dir.parent.parent / "data" / "run-latents-inputs" / "covariates.csv"
    out = tmp_path / "out" / "assoc.csv"
    assert main(["associate", str(run_dir), "--covariates", str(covariates), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:7]) == ["latent", "phenotype", "n", "rho", "p", "q", "pearson_r"]
    age = table[(table.latent == "retina:1") & (table.phenotype == "age")].iloc[0]
    assert age.q < 1e-6 and age.rho > 0 and age.source == "covariates"
    assert age.latent_label == "Vessel age"
    assert set(table[table.latent == "sleep:1"].latent_label) == {"sleep:1"}
    assert "wrote" in capsys.readouterr().out

    adjusted_out = tmp_path / "adjusted.csv"
    assert main(["associate", str(run_dir), "--covariates", str(covariates), "--adjust", "age,sex",
                 "--out", str(adjusted_out)]) == 0
    adjusted = pd.read_csv(adjusted_out)
    assert "age" not in set(adjusted.phenotype)
    vessel = adjusted[(adjusted.latent == "retina:1") & (adjusted.phenotype == "vessel_width")].iloc[0]
    raw_vessel = table[(table.latent == "retina:1") & (table.phenotype == "vessel_width")].iloc[0]
    assert abs(vessel.rho) < abs(raw_vessel.rho)  # part of it was age


def test_associate_command_bad_input_exits_2_with_a_message(run_dir, tmp_path, capsys):
    assert main(["associate", str(run_dir), "--adjust", "height", "--out", str(tmp_path / "x.csv")]) == 2
    assert "cannot adjust for 'height'" in capsys.readouterr().err
    assert main(["associate", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err


def test_run_sensitivities_use_each_modalitys_decoder_at_the_posterior_codes(run_dir, monkeypatch):
    import numpy as np
    import torch

    import mmcrl_core.infer as infer
    from mmcrl_core.analysis import SensitivityUnavailable, run_sensitivities
    from mmcrl_core.sensitivity import ranked_features

    with pytest.raises(SensitivityUnavailable, match="no trained model"):
        run_sensitivities(run_dir)

    weights = {"sleep": torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.1]]), "retina": torch.tensor([[0.0], [3.0]])}

    class FakeRun:  # the LoadedRun surface analysis relies on
        def decoder(self, modality):
            return lambda z, eta: torch.tanh(z @ weights[modality].T) + eta.sum(1, keepdim=True)

        def feature_names(self, modality):
            return {"sleep": ["odi", "ahi", "spo2_min"], "retina": ["cup_disc", "vessel_width"]}[modality]

        def posterior_codes(self):
            rng = np.random.default_rng(0)
            return {"sleep": (rng.normal(size=(50, 2)), rng.normal(size=(50, 1))),
                    "retina": (rng.normal(size=(50, 1)), np.zeros((50, 0)))}

    (run_dir / "model.pt").write_bytes(b"")
    monkeypatch.setattr(infer, "load_run", lambda folder: FakeRun())
    sensitivity = run_sensitivities(run_dir)
    assert list(sensitivity.index) == ["sleep:1", "sleep:2", "retina:1"]
    ranked = ranked_features(sensitivity)
    assert ranked[ranked.latent == "sleep:1"].feature.iloc[0] == "odi"
    assert list(ranked[ranked.latent == "sleep:2"].feature[:2]) == ["ahi", "spo2_min"]
    assert set(ranked[ranked.latent == "retina:1"].feature) == {"cup_disc", "vessel_width"}  # own modality only
    assert ranked[ranked.latent == "retina:1"].feature.iloc[0] == "vessel_width"
