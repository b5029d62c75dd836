"""Slot swaps: the move keeps the reconstruction exactly, and the check picks the slot that holds
a latent with cross-modal parents (and leaves a model that has it right alone)."""

import numpy as np
import torch

from mmcrl_core import slot_swaps
from mmcrl_core.config import ModelConfig
from mmcrl_core.model import ModalityLayout, build_model
from mmcrl_core.simulate import simulate


def _model(layouts, seed=0):
    torch.manual_seed(seed)
    return build_model(layouts, ModelConfig(hidden=16, depth=2))


def test_a_swap_keeps_reconstruction_and_moves_the_factor():
    layouts = [ModalityLayout("a", 6, 2, 1), ModalityLayout("b", 5, 2, 2)]
    model = _model(layouts).eval()
    xs = [torch.randn(40, lay.input_dim) for lay in layouts]
    masks = [torch.ones_like(x) for x in xs]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    model.loss(xs, masks)["loss"].backward()
    optimiser.step()  # Adam now has moment estimates to carry along
    model.eval()
    with torch.no_grad():
        before = model.encode(xs, masks)
        recon_before = [dec(m[:, : lay.latents], m[:, lay.latents :]) for (m, _), dec, lay in
                        zip(before, model.decoders, layouts)]
    out = model.encoders[1].net[-1]
    avg_before = optimiser.state[out.weight]["exp_avg"].clone()

    slot_swaps.apply(model, slot_swaps.SlotSwap(modality=1, z_slot=0, eta_slot=1, gain=1.0), optimiser)

    with torch.no_grad():
        after = model.encode(xs, masks)
        recon_after = [dec(m[:, : lay.latents], m[:, lay.latents :]) for (m, _), dec, lay in
                       zip(after, model.decoders, layouts)]
    for a, b in zip(recon_before, recon_after):
        torch.testing.assert_close(a, b)
    # modality b: z slot 0 and eta slot 1 (code column 3) traded places, means and log-variances
    torch.testing.assert_close(after[1][0][:, 0], before[1][0][:, 3])
    torch.testing.assert_close(after[1][0][:, 3], before[1][0][:, 0])
    torch.testing.assert_close(after[1][1][:, [1, 2]], before[1][1][:, [1, 2]])
    torch.testing.assert_close(after[0][0], before[0][0])  # modality a untouched
    avg_after = optimiser.state[out.weight]["exp_avg"]
    torch.testing.assert_close(avg_after[0], avg_before[3])
    torch.testing.assert_close(avg_after[3], avg_before[0])


def _codes_from_truth(sim, parked: list[tuple[int, int]], seed=0):
    """Per-modality codes (z..., eta) built from the simulator's truth; `parked`: (modality, z slot)
    pairs whose latent sits in the eta slot, with an unrelated Gaussian in its z slot."""
    rng = np.random.default_rng(seed)
    codes = []
    for m, name in enumerate(sim.modality_names):
        z = sim.latents[[c for c in sim.latents.columns if c.startswith(f"{name}:")]].to_numpy().copy()
        eta = rng.standard_normal((len(z), 1))
        for k in [k for pm, k in parked if pm == m]:
            z[:, k], eta[:, 0] = eta[:, 0], z[:, k].copy()
        codes.append(torch.tensor(np.c_[z, eta], dtype=torch.float32))
    return codes


def test_the_check_finds_a_latent_parked_in_eta_and_nothing_when_all_is_right():
    sim = simulate("case1", seed=0, n=3000)
    layouts = [ModalityLayout(m, 15, 2, 1) for m in sim.modality_names]
    model = _model(layouts)
    # the last modality's latents have cross-modal parents; park the first of them in eta
    child = next(int(c.split(":")[1]) - 1 for c in sim.adjacency.columns
                 if c.startswith("m2:") and sim.adjacency[c].loc[[p for p in sim.adjacency.index if p.startswith("m1:")]].any())
    found = slot_swaps.propose(model, _codes_from_truth(sim, [(1, child)]), steps=300, margin=0.05, seed=0)
    assert [(s.modality, s.z_slot, s.eta_slot) for s in found] == [(1, child, 0)]
    assert found[0].gain > 0.2
    assert slot_swaps.propose(model, _codes_from_truth(sim, []), steps=300, margin=0.05, seed=0) == []


def test_both_ends_of_a_cross_modal_edge_parked_in_eta_move_back_together():
    sim = simulate("case1", seed=0, n=3000)
    layouts = [ModalityLayout(m, 15, 2, 1) for m in sim.modality_names]
    parent, child = next((p, c) for p in sim.adjacency.index for c in sim.adjacency.columns
                         if sim.adjacency.loc[p, c] and p.startswith("m1:") and c.startswith("m2:"))
    parked = [(0, int(parent.split(":")[1]) - 1), (1, int(child.split(":")[1]) - 1)]
    found = slot_swaps.propose(_model(layouts), _codes_from_truth(sim, parked), steps=300, margin=0.05, seed=0)
    assert sorted((s.modality, s.z_slot, s.eta_slot) for s in found) == [(m, k, 0) for m, k in parked]
    assert found[0].gain > 0.2


def test_swaps_travel_as_a_vector_across_processes():
    swaps = [slot_swaps.SlotSwap(0, 1, 0, 0.3), slot_swaps.SlotSwap(2, 0, 1, 0.7)]
    vector = slot_swaps.to_vector(swaps, modalities=3)
    assert len(vector) == 9 and vector[3:6] == [0.0, 0.0, 0.0]
    assert slot_swaps.from_vector(vector) == swaps


def test_models_without_nuisance_are_not_swappable():
    assert not slot_swaps.swappable(_model([ModalityLayout("a", 4, 2, 0), ModalityLayout("b", 4, 2, 0)]))
    assert slot_swaps.swappable(_model([ModalityLayout("a", 4, 2, 1), ModalityLayout("b", 4, 2, 0)]))


def _layouts(*latents):
    return [ModalityLayout(f"m{i + 1}", 10, k, 1) for i, k in enumerate(latents)]


def test_refine_moves_a_swap_to_the_better_z_slot_and_drops_one_that_gains_nothing():
    """mod8's failure: the weakest-linked z slot held a real factor, the swap parked it in eta."""
    model = _model(_layouts(2, 2))
    swap = slot_swaps.SlotSwap
    proposed = [swap(0, 1, 0, 0.0), swap(1, 0, 0, 0.0)]
    values = {  # flow NLL of each set of swaps, as (modality, z slot) pairs
        ((0, 1), (1, 0)): 10.0,
        ((0, 0), (1, 0)): 9.0,  # modality 0's eta belongs in z slot 0
        ((1, 0),): 10.5,
        ((0, 0), (1, 1)): 9.5,
        ((0, 0),): 9.02,  # modality 1's swap gains less than the margin
    }

    def nll(swaps):
        return values[tuple((s.modality, s.z_slot) for s in swaps)]

    chosen, best = slot_swaps.refine(proposed, nll, model, margin=0.05)
    assert [(s.modality, s.z_slot, s.eta_slot) for s in chosen] == [(0, 0, 0)]
    assert best == 9.02


def test_refine_keeps_swaps_that_only_gain_together():
    model = _model(_layouts(1, 1))
    swap = slot_swaps.SlotSwap
    proposed = [swap(0, 0, 0, 0.0), swap(1, 0, 0, 0.0)]
    values = {((0, 0), (1, 0)): 9.0, ((1, 0),): 10.0, ((0, 0),): 10.0}
    chosen, best = slot_swaps.refine(proposed, lambda s: values[tuple((c.modality, c.z_slot) for c in s)], model, 0.05)
    assert chosen == proposed and best == 9.0
