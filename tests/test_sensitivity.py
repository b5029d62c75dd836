"""Decoder sensitivities rank each latent's truly driven features first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcrl_core.sensitivity import decoder_sensitivity, ranked_features


class SparseMixingDecoder(torch.nn.Module):
    """Simulator-style decoder: a random invertible-ish nonlinear mixing, but feature j only sees
    its own latent (driven_by[j]) and the nuisance, so the true driven features are known."""

    def __init__(self, driven_by: list[int], n_latents: int, n_nuisance: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        d = len(driven_by)
        mask = torch.zeros(d, n_latents)
        mask[torch.arange(d), torch.tensor(driven_by)] = 1.0
        self.register_buffer("mask", mask)
        self.w_z = torch.nn.Parameter(torch.rand(d, n_latents, generator=generator) + 0.5)
        self.w_eta = torch.nn.Parameter(0.3 * torch.randn(d, n_nuisance, generator=generator))

    def forward(self, z: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        h = z @ (self.w_z * self.mask).T + eta @ self.w_eta.T
        return torch.nn.functional.leaky_relu(h, 0.2) + 0.1 * torch.tanh(h) ** 3


def test_sensitivities_match_the_true_driven_features():
    driven_by = [0, 2, 1, 0, 2, 1, 1, 0]
    decoder = SparseMixingDecoder(driven_by, n_latents=3, n_nuisance=2)
    rng = np.random.default_rng(0)
    z, eta = rng.normal(size=(500, 3)), rng.normal(size=(500, 2))
    features = [f"f{j}" for j in range(len(driven_by))]
    sens = decoder_sensitivity(decoder, z, eta, ["m:1", "m:2", "m:3"], features, batch_size=128)
    assert sens.shape == (3, 8)
    ranked = ranked_features(sens)
    for i, latent in enumerate(["m:1", "m:2", "m:3"]):
        truly_driven = {features[j] for j, owner in enumerate(driven_by) if owner == i}
        top = ranked[ranked["latent"] == latent].head(len(truly_driven))
        assert set(top["feature"]) == truly_driven
        assert top["share"].sum() == pytest.approx(1.0, abs=1e-6)  # the rest have no derivative at all
    # mean |derivative| of a linear decoder is its |weight|
    linear = torch.nn.Linear(5, 4)
    sens_linear = decoder_sensitivity(lambda z, eta: linear(torch.cat([z, eta], 1)), z, eta)
    np.testing.assert_allclose(sens_linear.to_numpy(), linear.weight.detach().abs().numpy()[:, :3].T, rtol=1e-5)


def test_subjects_without_the_modality_are_skipped_and_eta_is_optional():
    decoder = SparseMixingDecoder([0, 1], n_latents=2, n_nuisance=0)
    z = np.array([[0.5, -1.0], [np.nan, np.nan], [1.0, 2.0]])
    sens = decoder_sensitivity(decoder, z)
    assert np.isfinite(sens.to_numpy()).all()
    assert sens.loc["z1", "x2"] == 0.0 and sens.loc["z1", "x1"] > 0
    with pytest.raises(ValueError):
        decoder_sensitivity(decoder, np.full((3, 2), np.nan))


def test_the_models_own_decoder_matches_finite_differences():
    from mmcrl_core.config import ModelConfig
    from mmcrl_core.model import MLPDecoder, ModalityLayout

    torch.manual_seed(0)
    decoder = MLPDecoder(ModalityLayout("m", input_dim=6, latents=2, nuisance=1), ModelConfig(hidden=16, depth=2))
    rng = np.random.default_rng(1)
    z, eta = rng.normal(size=(40, 2)).astype(np.float32), rng.normal(size=(40, 1)).astype(np.float32)
    sens = decoder_sensitivity(decoder, z, eta)
    zt, et = torch.tensor(z, dtype=torch.float64), torch.tensor(eta, dtype=torch.float64)
    step = 1e-5
    expected = np.zeros((2, 6))
    with torch.no_grad():
        double = decoder.double()
        for i in range(2):
            shift = torch.zeros_like(zt)
            shift[:, i] = step
            derivative = (double(zt + shift, et) - double(zt - shift, et)) / (2 * step)
            expected[i] = derivative.abs().mean(0).numpy()
    np.testing.assert_allclose(sens.to_numpy(), expected, rtol=1e-3, atol=1e-5)
