"""Training loop: split, mini-batches, Adam + StepLR, early stopping, best-weights restore, and
the graph read-out rule fixed in advance (METHOD 3b).

`fit` takes already standardised float32 arrays (NaN = missing), one per modality with the same
rows, and reports progress through a callback; it touches no files and no store.

Graph read-out (decided before seeing results, METHOD 3b): refit a fresh causal flow on the
standardised posterior-mean latents with a group lasso (ModelConfig.refit_penalty) on every allowed
edge; edge strength = path norm of the edge in its child's conditioner (CausalFlow.edge_strengths);
keep an edge when its strength > ModelConfig.edge_threshold (an absolute bar: the latents are
standardised, so strengths compare across data sets and one strong edge does not hide weaker true
ones). With ModelConfig.edge_rule set, the older relative rule instead: keep an edge when its
strength > edge_rule x the strongest edge of its kind (cross-modal / within-modality).
Within-modality edges are reported for completeness only: the method does not promise them
(latents are identified up to a permutation inside a modality).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import slot_swaps

# _Batches and resolve_device lived here first: other modules still import them from train
from .accelerate import (
    ProcessGroup,
    _Batches,
    all_reduce_sum,
    make_batches,
    resolve_device,
    training_autocast,
)
from .config import RunSpec
from .errors import UserInputError
from .model import ModalityLayout, MultimodalCRL, build_model, refit_flow, standardise_columns

ProgressFn = Callable[[dict], None]
EVAL_CHUNK = 8192


@dataclass
class FitResult:
    model: MultimodalCRL
    latent_names: list[str]
    latents: np.ndarray
    edge_strengths: np.ndarray
    adjacency: np.ndarray
    history: pd.DataFrame
    best_val_loss: float
    best_epoch: int
    device: str
    seconds: float
    train_index: np.ndarray
    val_index: np.ndarray
    layouts: list[ModalityLayout] = field(default_factory=list)
    seed: int = 0
    stopped_early: bool = False
    readout: dict = field(default_factory=dict)
    ids: np.ndarray | None = None

    @property
    def cross_modal(self) -> np.ndarray:
        return self.model.cross_modal.cpu().numpy()


def layouts_for(data: dict[str, np.ndarray], spec: RunSpec) -> list[ModalityLayout]:
    by_name = {m.name: m for m in spec.modalities}
    missing = [name for name in by_name if name not in data]
    if missing:
        raise UserInputError(f"no data given for modality {', '.join(missing)}")
    extra = [name for name in data if name not in by_name]
    if extra:
        raise UserInputError(f"data given for modality {', '.join(extra)} that the run spec does not list")
    return [
        ModalityLayout(name, int(data[name].shape[1]), by_name[name].latents, by_name[name].nuisance)
        for name in spec.modality_order()
    ]


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _check_arrays(arrays: list[np.ndarray], names: list[str]) -> int:
    rows = {a.shape[0] for a in arrays}
    if len(rows) != 1:
        raise UserInputError("every modality must have the same rows (subjects) in the same order")
    for arr, name in zip(arrays, names):
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise UserInputError(f"modality {name} has no numeric columns")
        if np.isinf(arr).any():
            raise UserInputError(f"modality {name} contains infinite values")
    n = rows.pop()
    if n < 10:
        raise UserInputError(f"only {n} subjects: at least 10 are needed to train")
    return n


class GlobalBatchSampler:
    """This process's share of every global mini-batch of an epoch.

    Every process draws the same permutation as a one-process run with the same seed and takes
    every world_size-th row of each global batch, so N processes see the one-process batches
    (torch's DistributedSampler would give each process a contiguous share of the epoch instead).
    A global batch is dropped when some process would get fewer than two rows: the causal layer
    standardises with batch statistics, which need two (with one process: a ragged batch of one).
    """

    def __init__(self, rows: np.ndarray, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.rows = np.asarray(rows)
        self.batch_size = min(batch_size, len(self.rows))
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)  # advanced once per epoch

    def epoch(self) -> Iterator[tuple[np.ndarray, int]]:
        """(this process's rows, size of the whole global batch) for each step of one epoch."""
        order = self.rng.permutation(self.rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            if len(chunk) < 2 * self.world_size:
                continue
            yield chunk[self.rank :: self.world_size], len(chunk)


class _Objective(nn.Module):
    """The model's loss as `forward`, so DDP sees the forward pass it synchronises gradients for."""

    def __init__(self, model: MultimodalCRL):
        super().__init__()
        self.model = model

    def forward(self, xs: list[torch.Tensor], masks: list[torch.Tensor], kl_scale: float = 1.0) -> dict:
        return self.model.loss(xs, masks, kl_scale=kl_scale)


def _evaluate(model: MultimodalCRL, batches: _Batches, rows: np.ndarray, seed: int) -> dict:
    """Validation loss with fixed reparameterisation noise, so epochs are comparable."""
    model.eval()
    gen = torch.Generator(device=batches.device).manual_seed(seed + 7919)
    totals = {"loss": 0.0, "rec": 0.0, "kl": 0.0, "sparsity": 0.0}
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_CHUNK):
            chunk = rows[start : start + EVAL_CHUNK]
            xs, masks = batches.get(chunk)
            terms = model.loss(xs, masks, generator=gen)
            for key in ("loss", "rec", "kl"):
                totals[key] += float(terms[key]) * len(chunk) / len(rows)
            totals["sparsity"] = float(terms["sparsity"])  # a property of the weights, not the rows
    model.train()
    return totals


def _validation_loss(
    model: MultimodalCRL, batches: _Batches, rows: np.ndarray, seed: int, group: ProcessGroup | None
) -> dict:
    """`_evaluate` on all validation rows; across processes each scores every world_size-th row and
    the sums are all-reduced, so every process gets the same loss and takes the same decisions."""
    if group is None or not group.distributed:
        return _evaluate(model, batches, rows, seed)
    mine = rows[group.rank :: group.world_size]
    terms = _evaluate(model, batches, mine, seed) if len(mine) else dict.fromkeys(("loss", "rec", "kl"), 0.0)
    sums = all_reduce_sum([terms[k] * len(mine) for k in ("loss", "rec", "kl")], group)
    out = {k: total / len(rows) for k, total in zip(("loss", "rec", "kl"), sums)}
    with torch.no_grad():  # a property of the (identical) weights, not of the rows
        out["sparsity"] = float(model.flow.group_lasso(model.cross_modal))
    return out


def posterior_latents(model: MultimodalCRL, batches: _Batches, n: int) -> np.ndarray:
    """Posterior-mean latents for all rows; NaN where a subject has no data for a modality."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, n, EVAL_CHUNK):
            rows = np.arange(start, min(n, start + EVAL_CHUNK))
            xs, masks = batches.get(rows)
            z = model.posterior_mean_latents(xs, masks)
            parts, col = [], 0
            for lay, m in zip(model.layouts, masks):
                block = z[:, col : col + lay.latents]
                absent = m.sum(1) == 0
                parts.append(torch.where(absent[:, None], torch.full_like(block, float("nan")), block))
                col += lay.latents
            out.append(torch.cat(parts, dim=1).cpu())
    return torch.cat(out).numpy()


def read_out_graph(
    model: MultimodalCRL, latents: np.ndarray, spec: RunSpec, device: torch.device
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The fixed-in-advance rule of the module docstring: (strengths, adjacency, info)."""
    cfg = spec.model
    complete = ~np.isnan(latents).any(axis=1)
    z = torch.from_numpy(latents[complete].astype(np.float32))
    if z.shape[0] < 2:
        k = latents.shape[1]
        return np.zeros((k, k)), np.zeros((k, k)), {"rule": "none: fewer than 2 complete subjects"}
    z = standardise_columns(z).to(device)
    allowed = model.flow.allowed.bool()
    flow, nll = refit_flow(
        z, allowed, cfg.flow_hidden, penalised=allowed, penalty=cfg.refit_penalty, output_l2=cfg.flow_l2,
        steps=cfg.refit_steps, seed=spec.train.seed,
    )
    strengths = flow.edge_strengths().detach().cpu().numpy().astype(float)
    cross = model.cross_modal.cpu().numpy()
    within = allowed.cpu().numpy() & ~cross
    adjacency = np.zeros_like(strengths)
    refit = (f"refit causal flow on standardised posterior-mean latents ({cfg.refit_steps} steps, group lasso "
             f"{cfg.refit_penalty} on all edges)")
    if cfg.edge_rule is None:
        keep = allowed.cpu().numpy() & (strengths > cfg.edge_threshold)
        adjacency[keep] = strengths[keep]
        info = {"rule": f"{refit}; keep an edge when strength > {cfg.edge_threshold}",
                "kind": "absolute", "threshold": cfg.edge_threshold}
    else:
        for which in (cross, within):
            if which.any():
                top = strengths[which].max()
                keep = which & (strengths > cfg.edge_rule * top) & (top > 0)
                adjacency[keep] = strengths[keep]
        info = {"rule": f"{refit}; keep a cross-modal edge when strength > {cfg.edge_rule} x the strongest "
                        f"cross-modal edge, a within-modality edge when > {cfg.edge_rule} x the strongest "
                        "within-modality edge",
                "kind": "relative", "threshold": cfg.edge_rule}
    info["refit_nll"] = nll
    return strengths, adjacency, info


def _slot_swaps(
    model: MultimodalCRL, batches, rows: np.ndarray, optimiser, tc, epoch: int, group: ProcessGroup | None
) -> list[slot_swaps.SlotSwap]:
    """At the configured epochs: find z/eta slot swaps on the main process, share them, make them."""
    if epoch not in tc.slot_swap_epochs or not slot_swaps.swappable(model):
        return []
    main = group is None or group.is_main
    found = slot_swaps.find_swaps(model, batches, rows, margin=tc.slot_swap_margin, seed=tc.seed + epoch) if main else []
    if group is not None and group.distributed:
        found = slot_swaps.from_vector(all_reduce_sum(slot_swaps.to_vector(found, len(model.layouts)), group))
    for swap in found:
        slot_swaps.apply(model, swap, optimiser)
    return found


def fit(
    data: dict[str, np.ndarray],
    spec: RunSpec,
    progress: ProgressFn | None = None,
    ids: np.ndarray | None = None,
    group: ProcessGroup | None = None,
) -> FitResult | None:
    """Train one model. With `group` (a distributed run, see distributed.py) every process of the
    group calls this: each trains on its share of every global mini-batch under DDP, all take the
    same early-stopping decisions, and rank 0 alone reports progress (events plus world_size) and
    returns the FitResult with latents and graph; the other ranks return None."""
    started = time.perf_counter()
    tc = spec.train
    world = 1 if group is None else group.world_size
    layouts = layouts_for(data, spec)
    arrays = [data[lay.name] for lay in layouts]
    n = _check_arrays(arrays, [lay.name for lay in layouts])
    # several processes on one node would oversubscribe its cores with one thread per core each
    threads = tc.threads or ((os.cpu_count() or 1) if world == 1 else None)
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(tc.device) if group is None else group.device
    torch.manual_seed(tc.seed)  # the same initial weights on every process (DDP also broadcasts them)

    train_idx, val_idx = split_rows(n, tc.val_fraction, tc.seed if tc.split_seed is None else tc.split_seed)
    if tc.missing == "complete":
        complete = np.all([~np.isnan(a).any(axis=1) for a in arrays], axis=0)
        train_idx, val_idx = train_idx[complete[train_idx]], val_idx[complete[val_idx]]
        if len(train_idx) < 2 or len(val_idx) < 1:
            raise UserInputError("too few subjects with every modality complete; use missing='mask'")
    if world > 1 and len(train_idx) < 2 * world:
        raise UserInputError(f"too few training subjects ({len(train_idx)}) for {world} processes; use fewer processes")
    sampler = GlobalBatchSampler(train_idx, tc.batch_size, tc.seed, 0 if group is None else group.rank, world)
    batches = make_batches(arrays, device, sampler.batch_size)
    model = build_model(layouts, spec.model).to(device)
    objective: nn.Module = _Objective(model)
    if world > 1:
        torch.manual_seed(tc.seed + 104729 * group.rank)  # other noise draws on other ranks; rank 0's as alone
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    optimiser = torch.optim.Adam(model.parameters(), lr=tc.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=tc.lr_step, gamma=tc.lr_gamma)
    reports = progress is not None and (group is None or group.is_main)

    rows: list[dict] = []
    best_val, best_epoch, best_state, stale = math.inf, 0, None, 0
    stopped_early = False
    for epoch in range(1, tc.epochs + 1):
        epoch_start = time.perf_counter()
        kl_scale = min(1.0, epoch / tc.kl_warmup) if tc.kl_warmup else 1.0
        sums = {"loss": 0.0, "rec": 0.0, "kl": 0.0, "sparsity": 0.0}
        n_batches = 0
        for mine, global_size in sampler.epoch():
            xs, masks = batches.get(mine)
            with training_autocast(device):
                terms = objective(xs, masks, kl_scale=kl_scale)
            loss = terms["loss"]
            if world > 1:  # DDP averages over ranks; weighting by share makes that the global-batch mean
                loss = loss * (len(mine) * world / global_size)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for key in sums:
                sums[key] += float(terms[key].detach())
            n_batches += 1
        scheduler.step()
        val = _validation_loss(model, batches, val_idx, tc.seed, group)
        if not math.isfinite(val["loss"]):
            raise FloatingPointError(f"validation loss became {val['loss']} at epoch {epoch}")
        if val["loss"] < best_val:
            best_val, best_epoch, stale = val["loss"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        swaps = _slot_swaps(model, batches, train_idx, optimiser, tc, epoch, group)
        if swaps:
            stale = 0  # the swapped model gets its full patience to settle
        train_loss = sums["loss"] / max(1, n_batches)
        if world > 1:
            train_loss = all_reduce_sum([train_loss], group)[0] / world
        row = {
            "epoch": epoch,
            "epochs": tc.epochs,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "rec": val["rec"],
            "kl": val["kl"],
            "sparsity": val["sparsity"],
            "best_val_loss": best_val,
            "lr": optimiser.param_groups[0]["lr"],
            "slot_swaps": len(swaps),
            "seconds": time.perf_counter() - epoch_start,
        }
        rows.append(row)
        if reports:
            mean_seconds = (time.perf_counter() - started) / epoch
            event = {**row, "eta_seconds": mean_seconds * (tc.epochs - epoch)}
            progress(event if group is None else {**event, "world_size": world})
        # every process saw the same validation losses, so all stop at the same epoch
        if stale >= tc.patience and epoch >= tc.min_epochs:
            stopped_early = True
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if group is not None and not group.is_main:
        return None
    latents = posterior_latents(model, batches, n)
    strengths, adjacency, readout = read_out_graph(model, latents, spec, device)
    return FitResult(
        model=model.cpu(),
        latent_names=spec.latent_names(),
        latents=latents,
        edge_strengths=strengths,
        adjacency=adjacency,
        history=pd.DataFrame(rows),
        best_val_loss=float(best_val),
        best_epoch=best_epoch,
        device=f"{device} x{world}" if world > 1 else str(device),
        seconds=time.perf_counter() - started,
        train_index=train_idx,
        val_index=val_idx,
        layouts=layouts,
        seed=tc.seed,
        stopped_early=stopped_early,
        readout=readout if group is None else {**readout, "world_size": world},
        ids=ids,
    )


def fit_seeds(
    data: dict[str, np.ndarray],
    spec: RunSpec,
    seeds: Sequence[int],
    progress: ProgressFn | None = None,
    ids: np.ndarray | None = None,
) -> list[FitResult]:
    """One fit per seed on the same train/validation split, so validation losses compare."""
    split_seed = spec.train.seed if spec.train.split_seed is None else spec.train.split_seed
    results = []
    for seed in seeds:
        seeded = spec.model_copy(
            update={"train": spec.train.model_copy(update={"seed": int(seed), "split_seed": split_seed})}
        )
        seed_progress = None if progress is None else (lambda ev, s=seed: progress({**ev, "seed": s}))
        results.append(fit(data, seeded, seed_progress, ids))
    return results


def select_best(results: Sequence[FitResult]) -> FitResult:
    """Lowest validation loss (METHOD 3b: it picked the best-MCC seed in most cases)."""
    if not results:
        raise ValueError("no results to choose from")
    return min(results, key=lambda r: r.best_val_loss)
