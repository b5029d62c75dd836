"""Peak memory of training on a large cohort: 200,000 subjects x 5 modalities x 100 columns.

Mini-batches are gathered from the host arrays as needed, so peak RSS should stay far below the
4 GB target (the data alone is 400 MB as float32). Runs `train.fit` for one epoch (plus the
posterior latents for every subject and the graph read-out) and prints peak RSS.

    .venv/bin/python benchmarks/memory_large.py [--n 200000] [--epochs 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from mmcrl_core.config import ModalitySpec, RunSpec, TrainConfig  # noqa: E402
from mmcrl_core.train import fit  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--modalities", type=int, default=5)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"before data: peak RSS {peak_rss_mb():.0f} MB")
    rng = np.random.default_rng(0)
    data = {}
    for i in range(args.modalities):
        block = np.empty((args.n, args.columns), dtype=np.float32)
        for lo in range(0, args.n, 50_000):  # fill in chunks: no float64 temporary of the whole table
            block[lo : lo + 50_000] = rng.standard_normal((min(50_000, args.n - lo), args.columns), dtype=np.float32)
        block[rng.random(args.n) < 0.05, : args.columns // 2] = np.nan  # some missing cells
        data[f"m{i + 1}"] = block
    data_mb = sum(a.nbytes for a in data.values()) / 2**20
    print(f"data: {data_mb:.0f} MB float32; peak RSS {peak_rss_mb():.0f} MB")
    spec = RunSpec(
        modalities=[ModalitySpec(name=m, latents=3, nuisance=1) for m in data],
        train=TrainConfig(epochs=args.epochs, threads=args.threads, device="cpu"),
    )
    started = time.perf_counter()
    result = fit(data, spec, progress=lambda e: print(f"epoch {e['epoch']}: {e['seconds']:.1f} s", flush=True))
    print(f"fit: {time.perf_counter() - started:.1f} s, latents {result.latents.shape}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (target < 4096 MB; data itself {data_mb:.0f} MB)")


if __name__ == "__main__":
    main()
