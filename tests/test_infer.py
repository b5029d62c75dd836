"""load_run / LoadedRun: the saved preprocessing and weights reproduce the run's latents."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmcrl_core import runfolder as rf
from mmcrl_core.config import ModalitySpec, ModelConfig, RunSpec, TrainConfig
from mmcrl_core.errors import UserInputError
from mmcrl_core.infer import load_run
from mmcrl_core.preprocessing import Preprocessor
from mmcrl_core.run_writer import write_run
from mmcrl_core.train import fit, split_rows


def _raw_tables(n: int = 240, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i}" for i in range(n)], name="pid")
    z = rng.standard_normal((n, 2))
    blood = pd.DataFrame(10 + 3 * np.tanh(z @ rng.standard_normal((2, 4))), index=ids,
                         columns=["hb", "wbc", "plt", "crp"])
    sleep = pd.DataFrame(50 + 5 * np.tanh(z[:, :1] @ rng.standard_normal((1, 3))) + rng.standard_normal((n, 3)),
                         index=ids, columns=["ahi", "spo2", "rem"])
    sleep.iloc[:5] = np.nan  # subjects without a sleep study
    return {"blood": blood, "sleep": sleep}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tables = _raw_tables()
    spec = RunSpec(
        modalities=[ModalitySpec(name="blood", latents=2, nuisance=1), ModalitySpec(name="sleep", latents=1)],
        model=ModelConfig(hidden=16, depth=1, flow_hidden=4, refit_steps=30),
        train=TrainConfig(epochs=3, batch_size=64, threads=1, device="cpu", seed=2),
    )
    ids = np.asarray(tables["blood"].index)
    train_rows, _ = split_rows(len(ids), spec.train.val_fraction, spec.train.seed)
    pre = Preprocessor.fit(tables, ids[train_rows], id_column="pid")
    ids, arrays = pre.transform(tables)
    result = fit(arrays, spec)
    out = tmp_path_factory.mktemp("runs") / "run"
    write_run(out, spec, result, ids, "pid", pre.to_dict(), {"blood": "x", "sleep": "y"})
    return out


def test_load_run_encodes_like_training(run_dir):
    loaded = load_run(run_dir)
    assert loaded.latent_names == ["blood:1", "blood:2", "sleep:1"]
    encoded = loaded.encode(_raw_tables())
    saved = rf.read_latents(run_dir)
    assert list(encoded.columns) == list(saved.columns)
    np.testing.assert_allclose(encoded.loc[saved.index].to_numpy(), saved.to_numpy(), rtol=1e-5, atol=1e-5)
    assert encoded.loc["p0", "sleep:1"] != encoded.loc["p0", "sleep:1"]  # NaN: no sleep data


def test_encode_new_subjects_with_raw_units(run_dir):
    loaded = load_run(run_dir)
    tables = _raw_tables()
    subset = {m: frame.iloc[100:103] for m, frame in tables.items()}
    few = loaded.encode(subset)
    everyone = loaded.encode(tables)
    np.testing.assert_allclose(few.to_numpy(), everyone.loc[few.index].to_numpy(), rtol=1e-5, atol=1e-6)


def test_decoder_and_feature_names(run_dir):
    loaded = load_run(run_dir)
    assert loaded.feature_names("sleep") == ["ahi", "spo2", "rem"]
    decode = loaded.decoder("blood")
    out = decode(torch.zeros(7, 2), torch.zeros(7, 1))
    assert out.shape == (7, 4)
    with pytest.raises(UserInputError, match="no modality"):
        loaded.decoder("retina")


def test_missing_columns_are_a_user_error(run_dir):
    loaded = load_run(run_dir)
    tables = _raw_tables()
    tables["blood"] = tables["blood"].drop(columns=["crp"])
    with pytest.raises(UserInputError, match="crp"):
        loaded.encode(tables)


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserInputError, match="not a run folder"):
        load_run(tmp_path)


def test_a_run_saved_by_an_incompatible_model_version_gives_a_clear_message(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "old-run"
    shutil.copytree(run_dir, broken)
    state = torch.load(broken / rf.MODEL, weights_only=True)
    state.pop(next(iter(state)))  # a parameter this version expects is missing
    torch.save(state, broken / rf.MODEL)
    with pytest.raises(UserInputError, match="earlier version of mmcrl's model"):
        load_run(broken)
