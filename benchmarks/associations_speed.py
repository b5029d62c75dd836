"""How long do latent <-> phenotype associations take at cohort scale?

Default: 100 latents x 2,000 phenotypes x 100,000 subjects (float32 input), timed three ways:
fully observed Pearson (the BLAS fast path), the masked path (5% missing cells), and the full
association table (Spearman + Pearson, p and q values) on the masked data.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/associations_speed.py [--subjects N --latents K
        --phenotypes P --threads T]

Prints seconds; it asserts nothing (timings belong in benchmarks, not in tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--latents", type=int, default=100)
    parser.add_argument("--phenotypes", type=int, default=2_000)
    parser.add_argument("--missing", type=float, default=0.05, help="fraction of missing phenotype cells")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (the target is 2 cores)")
    args = parser.parse_args()
    # must be set before numpy loads its BLAS
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    import numpy as np
    import pandas as pd

    from mmcrl_core.associations import association_table, correlate

    rng = np.random.default_rng(0)
    n, k, p = args.subjects, args.latents, args.phenotypes
    latents = rng.standard_normal((n, k), dtype=np.float32)
    phenotypes = rng.standard_normal((n, p), dtype=np.float32)
    phenotypes[:, : p // 10] = phenotypes[:, : p // 10] > 0  # a tenth binary, as in real cohorts
    print(f"{k} latents x {p} phenotypes x {n:,} subjects, float32 input, {args.threads} BLAS threads")

    def timed(label, work):
        # wall time is what a user waits; CPU time (all threads) shows what a shared machine hides
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        print(f"{label:<44} wall {time.perf_counter() - wall:6.1f} s   cpu {time.process_time() - cpu:6.1f} s")
        return result

    timed("pearson, fully observed (fast path)", lambda: correlate(latents, phenotypes, "pearson"))
    timed("spearman, fully observed", lambda: correlate(latents, phenotypes, "spearman"))
    phenotypes[rng.random((n, p)) < args.missing] = np.nan
    timed(f"pearson, {args.missing:.0%} missing (masked path)", lambda: correlate(latents, phenotypes, "pearson"))
    latent_frame = pd.DataFrame(latents, columns=[f"m:{i + 1}" for i in range(k)])
    phenotype_frame = pd.DataFrame(phenotypes, columns=[f"ph{j}" for j in range(p)])
    table = timed("full table (spearman + pearson, p, q)", lambda: association_table(latent_frame, phenotype_frame))
    print(f"{len(table):,} associations")
    print(f"null data: share with q < 0.05 = {(table['q'] < 0.05).mean():.4f}")


if __name__ == "__main__":
    main()
