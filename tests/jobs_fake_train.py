"""A stand-in for `python -m mmcrl_core train`, to test the executor's process handling quickly.

Takes the same arguments the executor passes (DATA..., --out, --config, --run-id, --threads) and
behaves as the run spec's name says (its first word):
  fake-ok         reports `epochs` progress events, writes a run folder, exits 0
  fake-hang       reports progress forever (until cancelled or killed)
  fake-stubborn   like fake-hang but ignores SIGTERM (so cancel must escalate to SIGKILL)
  fake-crash      prints a traceback-like message on stderr and exits 1
  fake-bad        prints "error: ..." on stderr and exits 2, like the CLI on bad input
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from mmcrl_core.config import RunSpec
from mmcrl_core.run_store import progress_reporter
from mmcrl_core.runfolder import staged_run_folder, write_json

EPOCH_SECONDS = 0.05


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="*")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--id-column")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    spec = RunSpec.model_validate_json(Path(args.config).read_text())
    mode = (spec.name or "fake-ok").split()[0]
    report = progress_reporter(args.run_id)
    print(f"fake training {args.run_id} mode={mode} threads={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    if mode == "fake-crash":
        print("Traceback (most recent call last):\nValueError: the fake model exploded", file=sys.stderr)
        return 1
    if mode == "fake-bad":
        print("error: column 'age' in fake.csv is not numeric; fix the table", file=sys.stderr)
        return 2
    if mode == "fake-stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    endless = mode in ("fake-hang", "fake-stubborn")
    epochs = spec.train.epochs
    epoch = 0
    while endless or epoch < epochs:
        epoch += 1
        loss = 1.0 / epoch + spec.train.seed * 0.01
        report({"epoch": epoch, "epochs": epochs, "train_loss": loss, "val_loss": loss + 0.1, "rec": loss / 2})
        time.sleep(EPOCH_SECONDS)
    with staged_run_folder(Path(args.out)) as folder:
        write_json(
            folder / "manifest.json",
            {
                "run_id": args.run_id,
                "status": "succeeded",
                "config": json.loads(spec.model_dump_json()),
                "device": "cpu",
                "threads": args.threads,
                "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                "metrics": {"best_val_loss": 1.0 / epochs + 0.1 + spec.train.seed * 0.01},
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
