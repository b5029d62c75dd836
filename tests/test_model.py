"""The estimator's modules: exact log-determinant, causal-order masks, missing-cell masking."""

import numpy as np
import pytest
import torch

from mmcrl_core.config import ModelConfig
from mmcrl_core.model import (
    ENCODERS,
    CausalFlow,
    ModalityLayout,
    allowed_parents,
    build_model,
    cross_modal_mask,
    refit_flow,
    register_encoder,
    split_missing,
)

LAYOUTS = [ModalityLayout("a", 5, 2, 1), ModalityLayout("b", 4, 3, 1), ModalityLayout("c", 6, 1, 0)]


def _randomise(flow: CausalFlow, seed: int = 0) -> None:
    """Move the flow away from its identity start so the test sees a non-trivial map."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)


def test_allowed_parents_follow_the_causal_order():
    allowed = allowed_parents([2, 3, 1])
    assert allowed.shape == (6, 6)
    assert not allowed.diagonal().any()
    # j -> i only for j earlier in the order: strictly upper in [parent, child] layout
    assert torch.equal(allowed, torch.ones(6, 6).triu(1).bool())
    cross = cross_modal_mask([2, 3, 1])
    assert not cross[0, 1] and cross[1, 2] and not cross[2, 4] and cross[4, 5]


def test_flow_starts_at_identity():
    flow = CausalFlow(allowed_parents([2, 2]), hidden=8)
    z = torch.randn(50, 4)
    eps, logdet = flow(z)
    assert torch.allclose(eps, z)
    assert torch.allclose(logdet, torch.zeros(50))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_det_matches_autograd_jacobian(seed):
    torch.manual_seed(seed)
    flow = CausalFlow(allowed_parents([2, 3]), hidden=6)
    _randomise(flow, seed)
    flow.eval()  # fixed (running) standardisation, so each row's map is its own function
    with torch.no_grad():
        flow.running_mean.copy_(torch.randn(5))
        flow.running_var.copy_(torch.rand(5) + 0.5)
    for _ in range(4):
        z = torch.randn(5)
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z)
        _, logdet = flow(z[None])
        sign, expected = torch.linalg.slogdet(jac)
        assert sign > 0
        assert torch.allclose(logdet[0], expected, atol=1e-4)
        # triangular: eps_i depends on z_j only if j == i or j is an allowed parent of i
        allowed = flow.allowed.bool().T | torch.eye(5, dtype=torch.bool)
        assert torch.all(jac[~allowed].abs() < 1e-7)


def test_disallowed_edges_have_exactly_zero_strength():
    flow = CausalFlow(allowed_parents([2, 2]), hidden=4)
    _randomise(flow)
    strengths = flow.edge_strengths()
    assert torch.all(strengths[~flow.allowed.bool()] == 0)
    assert torch.all(strengths[flow.allowed.bool()] > 0)


def test_loss_terms_are_finite_and_backpropagate():
    torch.manual_seed(0)
    model = build_model(LAYOUTS, ModelConfig(hidden=16, depth=2))
    xs = [torch.randn(32, lay.input_dim) for lay in LAYOUTS]
    masks = [torch.ones_like(x) for x in xs]
    terms = model.loss(xs, masks)
    assert set(terms) == {"loss", "rec", "kl", "sparsity"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.encoders[0].net[0].weight.grad is not None
    assert model.flow.w1.grad is not None


def test_masked_cells_do_not_change_the_loss():
    torch.manual_seed(0)
    model = build_model(LAYOUTS, ModelConfig(hidden=16, depth=2))
    model.eval()
    raw = [torch.randn(20, lay.input_dim) for lay in LAYOUTS]
    raw[0][3, 1] = float("nan")
    raw[1][5, :] = float("nan")  # a subject without modality b
    masks = [split_missing(x)[1] for x in raw]
    losses = []
    for fill in (0.0, 123.0, -7.5):
        xs = [torch.where(m.bool(), torch.nan_to_num(x), torch.full_like(x, fill)) for x, m in zip(raw, masks)]
        terms = model.loss(xs, masks, generator=torch.Generator().manual_seed(5))
        losses.append([terms[k].item() for k in ("loss", "rec", "kl")])
    assert losses[1] == pytest.approx(losses[0])
    assert losses[2] == pytest.approx(losses[0])
    # and the observed cells do matter
    xs = [torch.nan_to_num(x) for x in raw]
    xs[0][0, 0] += 5.0
    changed = model.loss(xs, masks, generator=torch.Generator().manual_seed(5))
    assert float(changed["rec"]) != pytest.approx(losses[0][1])


def test_encoders_are_pluggable():
    class ConstantEncoder(torch.nn.Module):
        def __init__(self, layout, config):
            super().__init__()
            self.out = torch.nn.Parameter(torch.zeros(layout.code_dim))

        def forward(self, x, mask):
            mean = self.out.expand(x.shape[0], -1)
            return mean, torch.zeros_like(mean)

    register_encoder("constant-test", ConstantEncoder)
    try:
        model = build_model(LAYOUTS, ModelConfig(hidden=8, depth=1, encoder="constant-test"))
        xs = [torch.randn(4, lay.input_dim) for lay in LAYOUTS]
        z = model.posterior_mean_latents(xs, [torch.ones_like(x) for x in xs])
        assert torch.all(z == 0)
    finally:
        ENCODERS.pop("constant-test")
    with pytest.raises(ValueError, match="unknown encoder"):
        build_model(LAYOUTS, ModelConfig(encoder="nope"))


def test_order_free_mode_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="causal order"):
        build_model(LAYOUTS, ModelConfig(order_free=True))


def test_refit_flow_finds_a_planted_cross_modal_edge():
    rng = np.random.default_rng(0)
    a1, a2 = rng.standard_normal((2, 3000))
    b1 = np.tanh(2 * a1) + 0.5 * rng.standard_normal(3000)  # a:1 -> b:1 only
    b2 = rng.standard_normal(3000)
    z = np.stack([a1, a2, b1, b2], axis=1)
    z = torch.tensor((z - z.mean(0)) / z.std(0), dtype=torch.float32)
    allowed = allowed_parents([2, 2])
    flow, nll = refit_flow(z, allowed, 8, allowed, penalty=0.01, output_l2=1e-3, steps=300)
    s = flow.edge_strengths().detach()
    cross = cross_modal_mask([2, 2]) & allowed
    assert s[0, 2] == s[cross].max()
    assert s[cross].sort().values[-2] < 0.25 * s[0, 2]
    assert np.isfinite(nll)


def test_standardised_codes_have_unit_batch_variance():
    torch.manual_seed(0)
    model = build_model(LAYOUTS, ModelConfig(hidden=16, depth=2, standardise_codes=True))
    xs = [torch.randn(64, lay.input_dim) for lay in LAYOUTS]
    for mean, _ in model.encode(xs, [torch.ones_like(x) for x in xs]):
        assert torch.allclose(mean.mean(0), torch.zeros(mean.shape[1]), atol=1e-5)
        assert torch.allclose(mean.var(0, unbiased=False), torch.ones(mean.shape[1]), atol=0.05)
