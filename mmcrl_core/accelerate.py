"""Where training runs: device choice, bf16 autocast where it is safe, row batches (pinned memory
for large data on a GPU), and the process group of a distributed run.

Helpers train.fit calls; they do nothing on a CPU or in a lone process, so one loop serves all.

- `pick_device`: "auto" takes the GPU when there is one (the local rank's GPU under torchrun).
- `ProcessGroup`: this process's rank among world_size and its device; distributed.py joins the
  group torchrun describes and hands it to train.fit. `all_reduce_sum` sums across it.
- `training_autocast`: bf16 autocast for the forward pass of TRAINING steps only, on a CUDA GPU
  that supports bf16. Why only there: the encoder / decoder / conditioner matmuls are where the
  time goes and tolerate bf16, and autocast already keeps exp, log, pow and sums (the log-det and
  the Gaussian log-likelihoods) in float32. The validation loss that drives early stopping, the
  posterior-mean latents and the graph read-out stay in float32, so what is selected and reported
  is not rounded. bf16 (not fp16) has float32's range, so no loss scaling is needed.
  MMCRL_BF16=0 turns it off.
- `make_batches`: small data lives on the GPU once (`_Batches`); data too large for that is
  gathered on the host into pinned staging buffers and copied asynchronously, two buffers in
  turn so the copy of one batch overlaps the compute of the previous one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserInputError
from .model import split_missing

BF16_ENV = "MMCRL_BF16"
# Above this, the modalities stay on the host and batches travel through pinned memory.
ON_DEVICE_LIMIT_BYTES = 2**30


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda was requested but no CUDA GPU is available; use auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_device(preference: str = "auto", local_rank: int | None = None) -> torch.device:
    """"auto": the GPU if there is one, else the CPU; under torchrun each process takes its own GPU."""
    device = resolve_device(preference)
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def bf16_enabled(device: torch.device) -> bool:
    if os.environ.get(BF16_ENV, "1") == "0" or device.type != "cuda":
        return False
    return bool(torch.cuda.is_bf16_supported())


@contextlib.contextmanager
def training_autocast(device: torch.device, enabled: bool | None = None) -> Iterator[None]:
    """bf16 autocast around a training forward pass where `bf16_enabled`; a no-op elsewhere."""
    if not (bf16_enabled(device) if enabled is None else enabled):
        yield
        return
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        yield


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands: rank among world_size, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def all_reduce_sum(values: list[float], group: ProcessGroup) -> list[float]:
    """The sums of `values` over the processes of `group` (the values themselves in a lone process)."""
    if not group.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=group.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


class _Batches:
    """Row-indexed access to the modalities, moving only the rows asked for to the device."""

    def __init__(self, arrays: list[np.ndarray], device: torch.device):
        self.device = device
        self.tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        total_bytes = sum(t.numel() * 4 for t in self.tensors)
        # on a GPU, small data lives there once; on a CPU nothing is copied
        if device.type == "cuda" and total_bytes < ON_DEVICE_LIMIT_BYTES:
            self.tensors = [t.to(device) for t in self.tensors]

    def get(self, rows: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        index = torch.from_numpy(rows).to(self.tensors[0].device)
        xs, masks = [], []
        for t in self.tensors:
            x, m = split_missing(t.index_select(0, index).to(self.device, non_blocking=True))
            xs.append(x)
            masks.append(m)
        return xs, masks


class PinnedBatches:
    """Like _Batches (same `get`), for data that stays on the host: rows are gathered into a
    pinned buffer and copied to the GPU without blocking the host."""

    def __init__(self, arrays: list[np.ndarray], device: torch.device, max_rows: int):
        self.device = device
        self.tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]
        self.max_rows = max_rows
        # two sets of staging buffers: one is being copied while the other is being filled
        self.staging = [
            [torch.empty((max_rows, t.shape[1]), dtype=torch.float32).pin_memory() for t in self.tensors]
            for _ in range(2)
        ]
        self.copied = [torch.cuda.Event(), torch.cuda.Event()]
        self.turn = 0

    def get(self, rows: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        if len(rows) > self.max_rows:  # evaluation chunks may be larger than a training batch
            return _split([t.index_select(0, index).to(self.device) for t in self.tensors])
        buffers, event = self.staging[self.turn], self.copied[self.turn]
        event.synchronize()  # the copy that last used these buffers has finished
        on_device = [
            torch.index_select(t, 0, index, out=buffer[: len(rows)]).to(self.device, non_blocking=True)
            for t, buffer in zip(self.tensors, buffers)
        ]
        event.record()
        self.turn = 1 - self.turn
        return _split(on_device)


def _split(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    pairs = [split_missing(t) for t in tensors]
    return [x for x, _ in pairs], [m for _, m in pairs]


def make_batches(arrays: list[np.ndarray], device: torch.device, batch_rows: int):
    """Row-indexed batches for `device`: on the GPU when the data fits there, pinned host memory
    when it does not, plain host tensors on a CPU."""
    total_bytes = sum(a.shape[0] * a.shape[1] * 4 for a in arrays)
    if device.type == "cuda" and total_bytes >= ON_DEVICE_LIMIT_BYTES:
        return PinnedBatches(arrays, device, batch_rows)
    return _Batches(arrays, device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak GPU memory allocated by this process (None on a CPU)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
