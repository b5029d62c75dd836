"""Slot swaps: a discrete move that gradient descent cannot make.

Within a modality the encoder's code is (z, eta), and the decoder does not care which slot holds
which factor: swapping a z slot with an eta slot (encoder output rows and decoder input columns)
leaves the reconstruction exactly as it was. The KL does care: a factor that has cross-modal
parents belongs in z, where the causal flow can explain it by them; in eta it pays its mutual
information with those parents (about 0.6 nats per subject for a child whose parents explain 70%
of its variance). Training sometimes parks such a factor in eta early, most often a latent of the
last modality, which has no cross-modal children to pull it back, and the path back to z runs
through worse solutions, so the gradient never takes it (case 3: a latent stuck in eta at MCC
0.25 while the rest of the model was at 0.97+).

The check, on posterior means of training rows: refit a causal flow (model.refit_flow) over every
slot, z and eta of all modalities, and read each slot's cross-modal edge strength; an eta slot that
is clearly linked to other modalities trades places with the least linked z slot of its modality.
The proposed swaps are made together (a cross-modal edge can have both ends parked in eta, as on
case 1, where moving one end alone gains nothing), and only if a flow refit to the swapped latents
fits better by more than a margin. Inside the set each swap is checked once more (`refine`): the
weakest-linked z slot may hold a real factor whose links are merely faint, so every z slot of the
modality is tried as the partner, and a swap that adds less than the margin to the set is left out
(on mod8 one such swap rode along with three strong ones and parked a latent for good). Swaps are
made in the model (weights and optimiser state) and training goes on; validation loss still decides
which weights are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .model import MultimodalCRL, allowed_parents, cross_modal_mask, refit_flow, standardise_columns

CHECK_ROWS = 4096


@dataclass(frozen=True)
class SlotSwap:
    modality: int  # index into model.layouts
    z_slot: int  # 0 .. latents - 1
    eta_slot: int  # 0 .. nuisance - 1
    gain: float  # nats per subject the refit flow gains


def _first_linear(module: nn.Module) -> nn.Linear | None:
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def swappable(model: MultimodalCRL) -> bool:
    """Every modality's encoder ends in one Linear giving (mean, logvar) and every decoder starts with
    one Linear taking (z, eta): true of the tabular MLPs; other encoder kinds are left alone."""
    for enc, dec, lay in zip(model.encoders, model.decoders, model.layouts):
        out, first = _last_linear(enc), _first_linear(dec)
        if out is None or first is None or out.out_features != 2 * lay.code_dim or first.in_features != lay.code_dim:
            return False
    return any(lay.nuisance > 0 for lay in model.layouts)


def _refit_nll_and_strengths(
    model: MultimodalCRL, latents: torch.Tensor, allowed: torch.Tensor, steps: int, seed: int
) -> tuple[float, torch.Tensor]:
    """A read-out flow refit (the model's flow settings) on standardised `latents`: mean NLL per
    subject and edge strengths [parent, child]."""
    cfg = model.config
    flow, nll = refit_flow(
        standardise_columns(latents), allowed, cfg.flow_hidden, penalised=allowed, penalty=cfg.refit_penalty,
        output_l2=cfg.flow_l2, steps=steps, seed=seed,
    )
    return nll, flow.edge_strengths().detach()


def _cross_strength_per_slot(model: MultimodalCRL, codes: list[torch.Tensor], steps: int, seed: int) -> list[np.ndarray]:
    """One flow refit over every slot (z and eta of all modalities, modality order): per modality and
    slot, the summed strength of its cross-modal edges in and out. A factor with cross-modal
    parents or children shows them wherever it sits; a slot holding true nuisance shows almost none."""
    sizes = [c.shape[1] for c in codes]
    _, strengths = _refit_nll_and_strengths(model, torch.cat(codes, dim=1), allowed_parents(sizes), steps, seed)
    strengths = strengths * cross_modal_mask(sizes).to(strengths.device)
    per_slot = (strengths.sum(0) + strengths.sum(1)).cpu().numpy()
    return np.split(per_slot, np.cumsum(sizes)[:-1])


def propose(
    model: MultimodalCRL, codes: list[torch.Tensor], steps: int, margin: float, seed: int
) -> list[SlotSwap]:
    """Swaps that move cross-modally linked factors out of eta slots, checked together: they are
    returned only if the causal flow fits the swapped latents better by more than `margin` nats.
    (Swaps go together because a cross-modal edge can have both ends parked in eta: moving either
    end alone gains nothing; each swap's partner z slot and its place in the set are then checked
    by `refine`.) `codes` are posterior means (z first, then eta) per modality."""
    allowed = model.flow.allowed.bool()
    offsets = np.cumsum([0] + [lay.latents for lay in model.layouts])
    z = torch.cat([c[:, : lay.latents] for c, lay in zip(codes, model.layouts)], dim=1)
    slot_strength = _cross_strength_per_slot(model, codes, steps, seed)
    overall = max(float(s.max()) for s in slot_strength)
    candidates: list[SlotSwap] = []
    for m, (strength, lay) in enumerate(zip(slot_strength, model.layouts)):
        z_order = list(np.argsort(strength[: lay.latents]))  # weakest z slots first
        for e in np.argsort(-strength[lay.latents :]):  # most linked eta slots first
            if not z_order:
                break
            k = z_order[0]
            eta_s, z_s = strength[lay.latents + e], strength[k]
            # clearly linked eta, clearly less linked z slot (factors of 2 and 10 keep noise out)
            if eta_s > 2 * z_s and eta_s > 0.1 * overall:
                candidates.append(SlotSwap(m, int(k), int(e), 0.0))
                z_order.pop(0)
    if not candidates:
        return []

    def nll(swaps: list[SlotSwap]) -> float:
        latents = z.clone()
        for c in swaps:
            lay = model.layouts[c.modality]
            latents[:, offsets[c.modality] + c.z_slot] = codes[c.modality][:, lay.latents + c.eta_slot]
        return _refit_nll_and_strengths(model, latents, allowed, steps, seed)[0]

    base = nll([])
    chosen, best = refine(candidates, nll, model, margin)
    gain = base - best
    if gain <= margin:
        return []
    return [SlotSwap(c.modality, c.z_slot, c.eta_slot, gain) for c in chosen]


def refine(
    candidates: list[SlotSwap], nll, model: MultimodalCRL, margin: float
) -> tuple[list[SlotSwap], float]:
    """Check each proposed swap inside the set: its z slot is the weakest-linked one, which can itself
    hold a real but faintly linked factor (mod8: a latent whose only cross-modal link is one of three
    parents of a child sat in that slot, was swapped into eta beside a strong swap elsewhere and stayed
    parked). So for each swap in turn, with the others fixed, try every other free z slot of its
    modality (kept if the flow fits better) and leaving the swap out (kept unless the swap gains
    more than `margin`). Returns the swaps kept and the flow NLL with them."""
    chosen = list(candidates)
    best = nll(chosen)
    for original in candidates:
        i = chosen.index(original)
        current = chosen[i]
        taken = {c.z_slot for c in chosen if c.modality == current.modality and c is not current}
        for z_slot in range(model.layouts[current.modality].latents):
            if z_slot == current.z_slot or z_slot in taken:
                continue
            other = SlotSwap(current.modality, z_slot, current.eta_slot, 0.0)
            value = nll(chosen[:i] + [other] + chosen[i + 1 :])
            if value < best:
                current, best = other, value
                chosen[i] = other
        without = chosen[:i] + chosen[i + 1 :]
        value = nll(without)
        if value <= best + margin:
            chosen, best = without, value
    return chosen, best


def _swap_rows(t: torch.Tensor, i: int, j: int, dim: int) -> None:
    index = torch.arange(t.shape[dim], device=t.device)
    index[i], index[j] = j, i
    t.copy_(t.index_select(dim, index))


def apply(model: MultimodalCRL, swap: SlotSwap, optimiser: torch.optim.Optimizer | None = None) -> None:
    """Make the swap in the weights (and in the optimiser's moment estimates, so Adam's step sizes
    follow the factor to its new slot); the flow's conditioner of the slot restarts at the identity."""
    lay = model.layouts[swap.modality]
    i, j = swap.z_slot, lay.latents + swap.eta_slot
    out = _last_linear(model.encoders[swap.modality])
    first = _first_linear(model.decoders[swap.modality])
    # (tensor, dimension, index pairs): mean rows, logvar rows, decoder input columns
    moves = [
        (out.weight, 0, [(i, j), (lay.code_dim + i, lay.code_dim + j)]),
        (out.bias, 0, [(i, j), (lay.code_dim + i, lay.code_dim + j)]),
        (first.weight, 1, [(i, j)]),
    ]
    with torch.no_grad():
        for param, dim, pairs in moves:
            states = [param] + ([] if optimiser is None else [
                v for v in optimiser.state.get(param, {}).values() if torch.is_tensor(v) and v.shape == param.shape
            ])
            for t in states:
                for a, b in pairs:
                    _swap_rows(t, a, b, dim)
        norm = model.code_norms[swap.modality]
        if isinstance(norm, nn.BatchNorm1d):
            _swap_rows(norm.running_mean, i, j, 0)
            _swap_rows(norm.running_var, i, j, 0)
        g = sum(other.latents for other in model.layouts[: swap.modality]) + i
        model.flow.w2[g].zero_()
        model.flow.b2[g].zero_()


@torch.no_grad()
def find_swaps(
    model: MultimodalCRL, batches, rows: np.ndarray, steps: int = 300, margin: float = 0.05, seed: int = 0
) -> list[SlotSwap]:
    """`propose` on up to CHECK_ROWS of `rows` (subjects with every modality); nothing is changed."""
    was_training = model.training
    model.eval()
    picked = rows[np.random.default_rng(seed).permutation(len(rows))[:CHECK_ROWS]]
    xs, masks = batches.get(np.sort(picked))
    complete = torch.stack([m.sum(1) > 0 for m in masks]).all(0)
    codes = [mean[complete].float() for mean, _ in model.encode(xs, masks)]
    model.train(was_training)
    if complete.sum() < 64:
        return []
    with torch.enable_grad():
        return propose(model, codes, steps, margin, seed)


def to_vector(swaps: list[SlotSwap], modalities: int) -> list[float]:
    """Swaps as floats (one triple per modality; 0 = none), to share them across DDP processes."""
    out = [0.0] * (3 * modalities)
    for swap in swaps:
        out[3 * swap.modality : 3 * swap.modality + 3] = [swap.z_slot + 1, swap.eta_slot + 1, swap.gain]
    return out


def from_vector(values: list[float]) -> list[SlotSwap]:
    return [
        SlotSwap(m, int(round(values[3 * m])) - 1, int(round(values[3 * m + 1])) - 1, float(values[3 * m + 2]))
        for m in range(len(values) // 3)
        if round(values[3 * m]) > 0
    ]
