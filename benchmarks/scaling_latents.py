"""Per-epoch training time as the number of latents grows (8 modalities x 2 vs 8 x 8 latents).

The causal layer computes every latent's conditioner in one batched op, so cost should grow gently
with K (target: 8 x 8 at most 1.7x the time of 8 x 2 at n = 10,000). The two sizes are timed
alternately in one process, so a busy shared machine affects both alike; the ratio is what counts.

    .venv/bin/python benchmarks/scaling_latents.py [--n 10000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from mmcrl_core.config import ModalitySpec, ModelConfig, RunSpec, TrainConfig  # noqa: E402
from mmcrl_core.model import ModalityLayout, build_model  # noqa: E402
from mmcrl_core.train import _Batches  # noqa: E402


def epoch_seconds(latents: int, data: dict[str, np.ndarray], batch_size: int, seed: int = 0) -> float:
    spec = RunSpec(
        modalities=[ModalitySpec(name=m, latents=latents, nuisance=1) for m in data],
        model=ModelConfig(),
        train=TrainConfig(batch_size=batch_size, seed=seed),
    )
    layouts = [ModalityLayout(m, a.shape[1], latents, 1) for m, a in data.items()]
    torch.manual_seed(seed)
    model = build_model(layouts, spec.model)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
    batches = _Batches(list(data.values()), torch.device("cpu"))
    n = len(next(iter(data.values())))
    order = np.random.default_rng(seed).permutation(int(n * 0.8))
    start = time.perf_counter()
    for lo in range(0, len(order), batch_size):
        xs, masks = batches.get(order[lo : lo + batch_size])
        terms = model.loss(xs, masks)
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--modalities", type=int, default=8)
    parser.add_argument("--columns", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    data = {f"m{i + 1}": rng.standard_normal((args.n, args.columns)).astype(np.float32)
            for i in range(args.modalities)}
    sizes = (2, 8)
    times: dict[int, list[float]] = {k: [] for k in sizes}
    epoch_seconds(sizes[0], data, args.batch_size)  # warm-up (allocator, kernels)
    for _ in range(args.rounds):
        for k in sizes:
            times[k].append(epoch_seconds(k, data, args.batch_size))
    for k in sizes:
        print(f"{args.modalities} modalities x {k} latents (K={args.modalities * k}): "
              f"median epoch {statistics.median(times[k]):.3f} s  (all: {', '.join(f'{t:.3f}' for t in times[k])})")
    ratio = statistics.median(times[sizes[1]]) / statistics.median(times[sizes[0]])
    print(f"ratio {args.modalities}x{sizes[1]} / {args.modalities}x{sizes[0]}: {ratio:.2f} (target <= 1.7)")


if __name__ == "__main__":
    main()
