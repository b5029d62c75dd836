#!/usr/bin/env bash
# GPU check, one prepared run: train the largest simulated setting that fits in 8 minutes and print
# samples per second, peak GPU memory and MCC against the simulator's truth.
#   bash benchmarks/gpu_check.sh [--budget-s 480] [--device auto|cpu|cuda] [--out numbers.json]
# Without a GPU it trains a tiny setting on the CPU (a check of the script itself, in about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # CPU fallback: be gentle on a shared machine
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" benchmarks/gpu_check.py "$@"
