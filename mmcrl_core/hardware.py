"""The hardware a run can use, and a pre-flight estimate of its memory and time per epoch.

The time estimate is measured, not guessed: it builds the run's real model (model.build_model) and
times a few optimiser steps on random mini-batches of the run's shape, with the threads a training
process would get. Memory is counted from the parameter and data sizes (measured on a GPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .config import RunSpec
from .jobs import cpu_cores, default_max_concurrent, threads_per_run

# A training process holds Python, torch and pandas before any data: about this much.
PROCESS_BASELINE_BYTES = 350 * 2**20


@dataclass
class CudaDevice:
    index: int
    name: str
    memory_bytes: int


@dataclass
class Hardware:
    cpu_cores: int
    cuda: list[CudaDevice] = field(default_factory=list)
    torch_version: str = ""

    def describe(self) -> str:
        text = f"{self.cpu_cores} CPU core{'s' if self.cpu_cores != 1 else ''}"
        if self.cuda:
            gpus = ", ".join(f"cuda:{d.index} {d.name} ({d.memory_bytes / 2**30:.0f} GiB)" for d in self.cuda)
            return f"{text}; GPU: {gpus}"
        return f"{text}; no CUDA GPU"

    def resolve(self, device: str) -> str:
        """What 'auto' means here."""
        if device == "auto":
            return "cuda" if self.cuda else "cpu"
        return device


def detect_hardware() -> Hardware:
    import torch  # imported on use: pages that never estimate do not pay for torch

    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(CudaDevice(index, props.name, int(props.total_memory)))
    return Hardware(cpu_cores=cpu_cores(), cuda=devices, torch_version=torch.__version__)


@dataclass
class Preflight:
    device: str
    threads: int
    parameters: int
    memory_bytes: int
    seconds_per_epoch: float
    batches_per_epoch: int
    epochs: int

    @property
    def seconds_total(self) -> float:
        """Upper bound: early stopping usually ends runs sooner."""
        return self.seconds_per_epoch * self.epochs

    def describe(self) -> str:
        return (
            f"about {self.memory_bytes / 2**20:,.0f} MB of memory and {format_seconds(self.seconds_per_epoch)} "
            f"per epoch on {self.device} with {self.threads} thread{'s' if self.threads != 1 else ''} "
            f"({self.batches_per_epoch} mini-batches, {self.parameters:,} parameters); at most "
            f"{format_seconds(self.seconds_total)} for {self.epochs} epochs"
        )


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def preflight(
    spec: RunSpec, n_subjects: int, columns: dict[str, int], threads: int = 1, timed_steps: int = 3
) -> Preflight:
    """Estimate memory and time per epoch for `spec` on n_subjects rows with `columns` per modality.

    Times `timed_steps` real optimiser steps (after one warm-up) of the run's model on random data.
    """
    import torch

    from .model import ModalityLayout, build_model

    hardware = detect_hardware()
    device = torch.device(hardware.resolve(spec.train.device))
    by_name = {m.name: m for m in spec.modalities}
    layouts = [
        ModalityLayout(name, int(columns[name]), by_name[name].latents, by_name[name].nuisance)
        for name in spec.modality_order()
    ]
    n_train = max(2, int(n_subjects * (1 - spec.train.val_fraction)))
    batch = max(2, min(spec.train.batch_size, n_train))
    batches = math.ceil(n_train / batch)
    n_val = max(1, n_subjects - n_train)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model(layouts, spec.model).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
        xs = [torch.randn(batch, lay.input_dim, device=device) for lay in layouts]
        masks = [torch.ones_like(x) for x in xs]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step_seconds = _time_steps(model, optimiser, xs, masks, timed_steps, device)
        eval_seconds = _time_eval(model, xs, masks, device)
        peak_device = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    finally:
        torch.set_num_threads(previous_threads)

    parameters = sum(p.numel() for p in model.parameters())
    data_bytes = n_subjects * sum(columns.values()) * 4
    # weights, gradients, Adam's two moments and the best-weights copy
    state_bytes = parameters * 4 * 5
    widest = max([spec.model.hidden, *(lay.input_dim for lay in layouts)])
    activation_bytes = batch * widest * spec.model.depth * 2 * len(layouts) * 4 * 3
    # tables are read with pandas (about 3 copies at peak) before becoming float32 arrays
    memory = PROCESS_BASELINE_BYTES + 3 * data_bytes + state_bytes + activation_bytes + peak_device
    seconds = step_seconds * batches + eval_seconds * math.ceil(n_val / batch)
    return Preflight(
        device=str(device), threads=threads, parameters=parameters, memory_bytes=int(memory),
        seconds_per_epoch=seconds, batches_per_epoch=batches, epochs=spec.train.epochs,
    )


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _time_steps(model, optimiser, xs, masks, steps: int, device) -> float:
    def step() -> None:
        terms = model.loss(xs, masks)
        optimiser.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimiser.step()

    model.train()
    step()  # warm-up: first-call allocations
    _sync(device)
    started = time.perf_counter()
    for _ in range(max(1, steps)):
        step()
    _sync(device)
    return (time.perf_counter() - started) / max(1, steps)


def _time_eval(model, xs, masks, device) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        started = time.perf_counter()
        model.loss(xs, masks)
        _sync(device)
    return time.perf_counter() - started


def default_threads() -> int:
    """Threads a training process gets under the current concurrency limit."""
    return threads_per_run(default_max_concurrent())
