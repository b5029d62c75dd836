"""DistributedDataParallel training: one process reproduces train.fit exactly; two processes under
torchrun recover the simulator's latents as well as a one-process run does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from mmcrl_core.accelerate import (
    bf16_enabled,
    make_batches,
    peak_memory_bytes,
    pick_device,
    training_autocast,
)
from mmcrl_core.config import ModelConfig, TrainConfig
from mmcrl_core.distributed import GlobalBatchSampler, ProcessGroup, fit_distributed
from mmcrl_core.metrics import mcc_by_modality
from mmcrl_core.runfolder import read_latents, read_manifest
from mmcrl_core.simulate import SimulationSettings, simulate, write_simulation
from mmcrl_core.train import fit
from mmcrl_core.workspace import REPO_ROOT


def test_global_batch_sampler_shares_out_the_one_process_batches():
    rows = np.arange(100, 203)  # 103 rows: a ragged last batch of 7
    one = list(GlobalBatchSampler(rows, 32, seed=3).epoch())
    shares = [list(GlobalBatchSampler(rows, 32, seed=3, rank=r, world_size=2).epoch()) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(one) == 4
    for (whole, size), (a, size_a), (b, size_b) in zip(one, shares[0], shares[1]):
        assert size == size_a == size_b == len(whole)
        assert not set(a) & set(b)
        assert sorted(np.concatenate([a, b])) == sorted(whole)
    # with 4 processes the last batch of 7 cannot give everyone two rows: every process skips it
    four = [list(GlobalBatchSampler(rows, 32, seed=3, rank=r, world_size=4).epoch()) for r in range(4)]
    assert {len(s) for s in four} == {3}


def test_one_process_reproduces_train_fit():
    sim = simulate("tiny", seed=0, n=120)
    spec = sim.run_spec(
        train=TrainConfig(epochs=2, batch_size=32, seed=1, threads=1, device="cpu"),
        model=ModelConfig(hidden=16, depth=1, refit_steps=20),
    )
    single = fit(sim.arrays(), spec)
    alone = fit_distributed(sim.arrays(), spec, group=ProcessGroup(0, 1, 0, torch.device("cpu")))
    np.testing.assert_array_equal(alone.latents, single.latents)
    np.testing.assert_allclose(alone.history["val_loss"], single.history["val_loss"])
    assert alone.best_val_loss == single.best_val_loss


def _mcc(run_dir, truth: pd.DataFrame) -> float:
    estimated = read_latents(run_dir)
    estimated.index = estimated.index.astype(str)
    return mcc_by_modality(truth.loc[estimated.index], estimated).value


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    # one latent per modality: every seed recovers it (MCC > 0.99 for seeds 0-3), so the
    # comparison measures the distributed training, not luck of the seed
    settings = SimulationSettings(modalities=2, latents=1, obs_dim=5, n=1000, mixing_layers=1, mechanism="tanh")
    data = write_simulation(simulate(settings, seed=0), tmp_path / "data")
    truth = pd.read_csv(data / "truth" / "latents.csv", index_col=0)
    truth.index = truth.index.astype(str)
    config = {
        "modalities": [{"name": "m1", "latents": 1}, {"name": "m2", "latents": 1}],
        "model": {"hidden": 32, "depth": 2, "refit_steps": 50},
        "train": {"epochs": 40, "lr": 0.01, "batch_size": 128, "seed": 0, "device": "cpu", "threads": 1},
    }
    (tmp_path / "spec.json").write_text(json.dumps(config))
    args = [f"m1={data / 'm1.csv'}", f"m2={data / 'm2.csv'}", "--config", str(tmp_path / "spec.json"), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MMCRL_HOME": str(tmp_path / "ws")}
    one = subprocess.run([sys.executable, "-m", "mmcrl_core", "train", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "mmcrl_core.distributed", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert read_manifest(tmp_path / "two")["device"] == "cpu x2"
    mcc_one, mcc_two = _mcc(tmp_path / "one", truth), _mcc(tmp_path / "two", truth)
    assert mcc_one > 0.95, mcc_one
    assert abs(mcc_two - mcc_one) <= 0.02, (mcc_one, mcc_two)


def test_gpu_helpers_leave_a_cpu_run_as_it_is():
    cpu = torch.device("cpu")
    assert pick_device("cpu") == cpu
    assert not bf16_enabled(cpu)
    with training_autocast(cpu):
        assert not torch.is_autocast_enabled()
    arrays = [np.arange(12, dtype=np.float32).reshape(4, 3), np.full((4, 2), np.nan, dtype=np.float32)]
    xs, masks = make_batches(arrays, cpu, batch_rows=2).get(np.array([3, 1]))
    np.testing.assert_array_equal(xs[0].numpy(), arrays[0][[3, 1]])
    assert masks[1].sum() == 0 and xs[1].abs().sum() == 0  # missing cells: masked out, filled with 0
    assert peak_memory_bytes(cpu) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned-memory batches need a CUDA GPU")
def test_pinned_batches_give_the_rows_asked_for_on_the_gpu():
    from mmcrl_core.accelerate import PinnedBatches

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(500, 7)).astype(np.float32), rng.normal(size=(500, 3)).astype(np.float32)]
    arrays[1][::5, 0] = np.nan
    batches = PinnedBatches(arrays, torch.device("cuda"), max_rows=64)
    for rows in (rng.choice(500, 64, replace=False), rng.choice(500, 10, replace=False), np.arange(300)):
        xs, masks = batches.get(rows)
        for x, m, a in zip(xs, masks, arrays):
            expected = a[rows]
            np.testing.assert_array_equal(m.cpu().numpy(), ~np.isnan(expected))
            np.testing.assert_array_equal(x.cpu().numpy(), np.nan_to_num(expected, nan=0.0))


@pytest.mark.slow
def test_gpu_check_script_runs_its_cpu_fallback(tmp_path):
    out = tmp_path / "numbers.json"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), "--budget-s", "10",
                           "--device", "cpu", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in ("samples/s:", "peak GPU memory: n/a (CPU)", "MCC:"):
        assert line in done.stdout
    numbers = json.loads(out.read_text())
    assert numbers["setting"]["name"] == "tiny" and numbers["epochs"] >= 5
    assert numbers["samples_per_s"] > 0 and 0 <= numbers["mcc"] <= 1
