"""GPU check: train the largest simulated setting that fits in the time budget and print samples
per second, peak GPU memory and MCC against the simulator's truth.

    bash benchmarks/gpu_check.sh                      # 8 minutes on a GPU; a tiny setting on a CPU
    python benchmarks/gpu_check.py --budget-s 60 --out gpu_check.json

How "largest that fits" is found: settings grow along a ladder (subjects, modalities, columns,
network width). Each is simulated and timed for one epoch, from the smallest up, while the
probes use at most a quarter of the budget; a setting is feasible when MIN_EPOCHS epochs at the
probed speed (plus its read-out) fit in what is left. The largest feasible one is then trained
for as many epochs as fit (at most MAX_EPOCHS) through the training path of
mmcrl_core.distributed / mmcrl_core.accelerate (bf16 autocast on CUDA, pinned-memory batches
for data that does not fit on the GPU). On a machine without a GPU the ladder is a single tiny
setting, so the script's own path can be checked anywhere.

Numbers are printed, never asserted: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from mmcrl_core.accelerate import bf16_enabled, peak_memory_bytes, pick_device
from mmcrl_core.config import ModelConfig, TrainConfig
from mmcrl_core.distributed import fit_distributed
from mmcrl_core.metrics import mcc_by_modality
from mmcrl_core.simulate import SimulationSettings, simulate

MIN_EPOCHS = 5
MAX_EPOCHS = 60
PROBE_SHARE = 0.25  # of the budget, for simulating and probing the ladder


@dataclass(frozen=True)
class Setting:
    name: str
    modalities: int
    latents: int
    obs_dim: int
    n: int
    hidden: int
    batch_size: int

    @property
    def columns(self) -> int:
        return self.modalities * self.obs_dim


GPU_LADDER = [
    Setting("s1", modalities=2, latents=2, obs_dim=15, n=10_000, hidden=128, batch_size=512),
    Setting("s2", modalities=3, latents=3, obs_dim=30, n=50_000, hidden=256, batch_size=1024),
    Setting("s3", modalities=4, latents=3, obs_dim=60, n=100_000, hidden=256, batch_size=2048),
    Setting("s4", modalities=6, latents=3, obs_dim=100, n=200_000, hidden=512, batch_size=4096),
    Setting("s5", modalities=8, latents=3, obs_dim=150, n=400_000, hidden=512, batch_size=8192),
]
CPU_LADDER = [Setting("tiny", modalities=2, latents=2, obs_dim=6, n=2_000, hidden=32, batch_size=256)]


def simulate_setting(setting: Setting, seed: int = 0):
    # sparser cross-modal edges as modalities grow, like the paper's mod5 / mod6 / mod8 settings
    return simulate(SimulationSettings(
        name=setting.name, modalities=setting.modalities, latents=setting.latents, obs_dim=setting.obs_dim,
        n=setting.n, cross_edge_prob=min(0.15, 0.5 / setting.modalities),
    ), seed=seed)


def spec_for(sim, setting: Setting, epochs: int, device: str):
    return sim.run_spec(
        model=ModelConfig(hidden=setting.hidden, refit_steps=300),
        train=TrainConfig(epochs=epochs, batch_size=setting.batch_size, patience=epochs, device=device, lr=2e-3),
    )


def probe(setting: Setting, device: str) -> dict:
    """Simulate the setting and time one epoch; seconds per epoch and for the fixed parts."""
    started = time.perf_counter()
    sim = simulate_setting(setting)
    simulated = time.perf_counter()
    result = fit_distributed(sim.arrays(), spec_for(sim, setting, 1, device))
    return {
        "sim": sim,
        "simulate_s": simulated - started,
        "epoch_s": float(result.history["seconds"].iloc[0]),
        "fixed_s": result.seconds - float(result.history["seconds"].sum()),  # read-out, latents
    }


def choose(ladder: list[Setting], device: str, budget_s: float, started: float) -> tuple[Setting, dict]:
    chosen = None
    for setting in ladder:
        spent = time.perf_counter() - started
        if chosen is not None and spent > PROBE_SHARE * budget_s:
            break
        try:
            timing = probe(setting, device)
        except torch.OutOfMemoryError:
            print(f"  {setting.name}: out of GPU memory", flush=True)
            break
        left = budget_s - (time.perf_counter() - started)
        needed = MIN_EPOCHS * timing["epoch_s"] + timing["fixed_s"]
        print(f"  {setting.name}: n={setting.n} columns={setting.columns} hidden={setting.hidden} "
              f"simulate {timing['simulate_s']:.1f}s epoch {timing['epoch_s']:.2f}s -> "
              f"{MIN_EPOCHS} epochs need {needed:.0f}s of {left:.0f}s left", flush=True)
        if chosen is not None and needed > left:
            break
        chosen = (setting, timing)
    if chosen is None:
        raise SystemExit(f"even the smallest setting ({ladder[0].name}) does not fit on this device")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=None,
                        help="wall-clock budget in seconds (default 480 on a GPU, 60 on a CPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    budget_s = args.budget_s or (480.0 if on_gpu else 60.0)
    ladder = GPU_LADDER if on_gpu else CPU_LADDER
    if on_gpu:
        props = torch.cuda.get_device_properties(device)
        print(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, bf16 autocast "
              f"{'on' if bf16_enabled(device) else 'off'}", flush=True)
    else:
        print(f"device: CPU ({torch.get_num_threads()} threads): tiny setting only", flush=True)
    print(f"budget {budget_s:.0f}s; probing settings:", flush=True)

    setting, timing = choose(ladder, device.type, budget_s, started)
    left = budget_s - (time.perf_counter() - started)
    epochs = int(np.clip((0.9 * left - timing["fixed_s"]) / max(timing["epoch_s"], 1e-3), MIN_EPOCHS, MAX_EPOCHS))
    sim = timing["sim"]
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    print(f"training {setting.name} for {epochs} epochs", flush=True)
    result = fit_distributed(sim.arrays(), spec_for(sim, setting, epochs, device.type))
    train_rows = len(result.train_index)
    train_s = float(result.history["seconds"].sum())
    estimated = pd.DataFrame(result.latents, columns=result.latent_names, index=sim.latents.index)
    score = mcc_by_modality(sim.latents, estimated)
    peak = peak_memory_bytes(device)
    numbers = {
        "setting": asdict(setting),
        "device": result.device,
        "bf16": bf16_enabled(device),
        "epochs": len(result.history),
        "samples_per_s": train_rows * len(result.history) / train_s,
        "peak_gpu_memory_gib": None if peak is None else peak / 2**30,
        "mcc": score.value,
        "mcc_min_modality": score.min_modality,
        "best_val_loss": result.best_val_loss,
        "train_s": train_s,
        "total_s": time.perf_counter() - started,
    }
    print(f"samples/s: {numbers['samples_per_s']:.0f}")
    print("peak GPU memory: " + ("n/a (CPU)" if peak is None else f"{numbers['peak_gpu_memory_gib']:.2f} GiB"))
    print(f"MCC: {score.value:.3f} (lowest modality {score.min_modality:.3f})")
    print(f"total: {numbers['total_s']:.0f}s of {budget_s:.0f}s", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(numbers, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
