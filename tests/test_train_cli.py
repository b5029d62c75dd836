"""The `train` and `encode` commands end to end on a tiny simulation, and clean failure."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmcrl_core import runfolder as rf
from mmcrl_core.cli import main
from mmcrl_core.simulate import simulate, write_simulation

REPO = Path(__file__).resolve().parent.parent
FAST = ["--epochs", "3", "--threads", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    return write_simulation(simulate("tiny", seed=1, n=200), tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    """A RunSpec JSON with a small network, so the CLI tests stay quick."""
    path = tmp_path_factory.mktemp("cfg") / "spec.json"
    path.write_text(json.dumps({
        "modalities": [{"name": "m1"}, {"name": "m2"}],
        "model": {"hidden": 16, "depth": 1, "flow_hidden": 4, "refit_steps": 30},
        "train": {"batch_size": 64},
    }))
    return path


@pytest.fixture(scope="module")
def run_dir(sim_dir, small_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(["train", str(sim_dir / "m1.csv"), str(sim_dir / "m2.csv"), "--out", str(out),
                 "--config", str(small_config), "--latents", "m1=2,m2=1", "--eta", "1", "--seed", "4", *FAST])
    assert code == 0
    return out


def test_train_writes_the_whole_run_folder(run_dir, sim_dir):
    for name in [rf.MANIFEST, rf.MODEL, rf.PREPROCESSING, rf.LATENTS, rf.EDGE_STRENGTHS, rf.ADJACENCY, rf.EDGES,
                 rf.HISTORY, *rf.GRAPH_FILES.values()]:
        assert (run_dir / name).is_file(), name
    manifest = rf.read_manifest(run_dir)
    assert manifest["status"] == "succeeded"
    assert manifest["seed"] == 4
    assert manifest["spec"]["model"]["hidden"] == 16  # from --config
    assert [m["latents"] for m in manifest["spec"]["modalities"]] == [2, 1]  # --latents overrides
    assert set(manifest["data_sha256"]) == {"m1", "m2"}
    assert {"torch", "numpy", "pandas", "mmcrl"} <= set(manifest["versions"])
    assert manifest["metrics"]["best_val_loss"] > -np.inf
    readout = manifest["graph_readout"]
    assert "rule" in readout and readout["kind"] == "absolute"
    assert readout["threshold"] == manifest["spec"]["model"]["edge_threshold"]
    latents = rf.read_latents(run_dir)
    assert list(latents.columns) == ["m1:1", "m1:2", "m2:1"]
    assert latents.index.name == "subject_id" and len(latents) == 200
    edges = rf.read_edges(run_dir)
    assert list(edges.columns) == rf.EDGE_COLUMNS
    assert (edges["weight"] > readout["threshold"]).all()
    state = torch.load(run_dir / rf.MODEL, weights_only=True)
    assert any(key.startswith("flow.") for key in state)
    history = pd.read_csv(run_dir / rf.HISTORY)
    assert len(history) == 3


def test_encode_reproduces_the_saved_latents(run_dir, sim_dir, tmp_path):
    out = tmp_path / "encoded.csv"
    code = main(["encode", str(run_dir), f"m1={sim_dir / 'm1.csv'}", f"m2={sim_dir / 'm2.csv'}", "--out", str(out)])
    assert code == 0
    encoded = pd.read_csv(out, index_col=0)
    saved = rf.read_latents(run_dir)
    encoded.index = encoded.index.astype(str)
    saved.index = saved.index.astype(str)
    np.testing.assert_allclose(encoded.loc[saved.index].to_numpy(), saved.to_numpy(), rtol=1e-5, atol=1e-5)


def test_bad_input_exits_2_and_leaves_nothing(sim_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(sim_dir / "m1.csv"), str(tmp_path / "missing.csv"), "--out", str(out), *FAST]) == 2
    assert main(["train", str(sim_dir / "m1.csv"), str(sim_dir / "m2.csv"), "--out", str(out),
                 "--latents", "m9=2", *FAST]) == 2
    assert "m9" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".run.partial-*"))


def test_existing_out_is_refused(run_dir, sim_dir):
    assert main(["train", str(sim_dir / "m1.csv"), str(sim_dir / "m2.csv"), "--out", str(run_dir), *FAST]) == 2


def test_failed_training_leaves_nothing(sim_dir, tmp_path, monkeypatch):
    import mmcrl_core.run_writer as run_writer

    def broken_graph_files(run_dir):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_writer, "_write_graph_files", broken_graph_files)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        main(["train", str(sim_dir / "m1.csv"), str(sim_dir / "m2.csv"), "--out", str(out), *FAST])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_stops_training_and_leaves_nothing(sim_dir, small_config, tmp_path):
    out = tmp_path / "runs" / "run"
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmcrl_core", "train", str(sim_dir / "m1.csv"), str(sim_dir / "m2.csv"),
             "--out", str(out), "--config", str(small_config), "--epochs", "100000", "--threads", "1",
             "--device", "cpu"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        deadline = time.time() + 90
        # wait until training is under way: the progress bar has counted an epoch
        while time.time() < deadline and proc.poll() is None and "epoch/s" not in log.read_text() \
                and "s/epoch" not in log.read_text():
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not out.exists()
    assert not list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else True


def test_loaded_run_reads_its_sources_for_posterior_codes(run_dir):
    from mmcrl_core.infer import load_run

    loaded = load_run(run_dir)
    codes = loaded.posterior_codes()
    saved = rf.read_latents(run_dir)
    z, eta = codes["m1"]
    assert eta.shape == (200, 1)
    np.testing.assert_allclose(z, saved[["m1:1", "m1:2"]].to_numpy(), rtol=1e-5, atol=1e-5)
