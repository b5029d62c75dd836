"""The estimator of METHOD.md section 3 as pure torch modules (no files, no SQLite, no Streamlit).

Pieces:
- per-modality stochastic encoders q(z^(m), eta^(m) | x^(m)) (pluggable: see `register_encoder`)
  and decoders (z^(m), eta^(m)) -> x_hat^(m);
- `CausalFlow`: the latent causal layer. Every latent i has a small MLP conditioner over its
  allowed parents, computed for all latents at once with masked, grouped weights; it maps
  z_i -> eps_i = (z_i - mu_i(pa)) * exp(-s_i(pa)). Parents always precede children in the causal
  order, so the map is triangular and log|det| = -sum_i s_i exactly;
- `MultimodalCRL`: the loss of METHOD 3/3b: Gaussian reconstruction NLL (masked for missing
  cells) + a Monte-Carlo KL E_q[log q(z, eta | x) - log p_flow(z) - log N(eta; 0, I)] + a group
  lasso on cross-modal edge strengths.

Edge strength j -> i is the norm of parent j's first-layer weights in latent i's conditioner, times
the norm of that conditioner's output layer. The conditioner sees parents standardised with batch
statistics (no affine), so rescaling z cannot shrink it, and the product cannot be shrunk by moving
scale between the two layers (LeakyReLU is positively homogeneous); see CausalFlow.edge_strengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import ModelConfig

LOG_2PI = math.log(2 * math.pi)
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class ModalityLayout:
    """What the network needs to know about one modality."""

    name: str
    input_dim: int
    latents: int
    nuisance: int

    @property
    def code_dim(self) -> int:
        return self.latents + self.nuisance


# ---------------------------------------------------------------------------------------------
# Encoders and decoders


class Encoder(Protocol):
    """x (NaN already replaced by 0) and its observed-mask -> posterior mean and log-variance of
    (z, eta), each of shape [n, latents + nuisance], z first."""

    def __call__(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]: ...


EncoderFactory = Callable[[ModalityLayout, ModelConfig], nn.Module]
ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(name: str, factory: EncoderFactory) -> None:
    """Make an encoder kind available to ModelConfig.encoder (images, time series... later)."""
    ENCODERS[name] = factory


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Tabular encoder. The mask is an input too, so a missing cell is not mistaken for a 0."""

    def __init__(self, layout: ModalityLayout, config: ModelConfig):
        super().__init__()
        self.code_dim = layout.code_dim
        self.net = mlp([2 * layout.input_dim] + [config.hidden] * config.depth + [2 * layout.code_dim])

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(torch.cat([x, mask], dim=1))
        mean, logvar = out[:, : self.code_dim], out[:, self.code_dim :]
        # soft bounds keep exp(logvar) finite early in training without clipping gradients to 0
        return mean, 7.0 * torch.tanh(logvar / 7.0)


register_encoder("mlp", MLPEncoder)


class MLPDecoder(nn.Module):
    def __init__(self, layout: ModalityLayout, config: ModelConfig):
        super().__init__()
        self.net = mlp([layout.code_dim] + [config.hidden] * config.depth + [layout.input_dim])

    def forward(self, z: Tensor, eta: Tensor) -> Tensor:
        return self.net(torch.cat([z, eta], dim=1))


# ---------------------------------------------------------------------------------------------
# Latent causal layer


def allowed_parents(latent_counts: list[int]) -> Tensor:
    """Bool [K, K], rows = parent, columns = child: strictly lower-triangular in causal-layer
    order (modalities in causal order, then within-modality index), so j -> i only if j < i."""
    total = sum(latent_counts)
    return torch.ones(total, total).triu(diagonal=1).bool()


def cross_modal_mask(latent_counts: list[int]) -> Tensor:
    """Bool [K, K]: True where parent and child belong to different modalities."""
    block = torch.cat([torch.full((k,), m) for m, k in enumerate(latent_counts)])
    return block[:, None] != block[None, :]


class CausalFlow(nn.Module):
    """Conditional affine flow z -> eps over all K latents, every conditioner in one batched op.

    Conditioner of latent i: h_i = LeakyReLU(sum_j W1[j, i, :] * zstd_j + b1_i) over allowed j,
    (mu_i, s_i) = h_i @ W2_i + b2_i. W2, b2 start at 0, so the flow starts at the identity.
    """

    def __init__(self, allowed: Tensor, hidden: int, momentum: float = 0.1):
        super().__init__()
        k = allowed.shape[0]
        self.k, self.hidden, self.momentum = k, hidden, momentum
        self.register_buffer("allowed", allowed.float())  # [parent, child]
        n_parents = allowed.sum(0).clamp(min=1).float()  # per child
        w1 = torch.randn(k, k, hidden) / n_parents.sqrt()[None, :, None]
        self.w1 = nn.Parameter(w1)  # [parent, child, hidden]
        self.b1 = nn.Parameter(torch.randn(k, hidden) * 0.1)
        self.w2 = nn.Parameter(torch.zeros(k, hidden, 2))  # [child, hidden, (mu, s)]
        self.b2 = nn.Parameter(torch.zeros(k, 2))
        self.register_buffer("running_mean", torch.zeros(k))
        self.register_buffer("running_var", torch.ones(k))

    def masked_w1(self) -> Tensor:
        return self.w1 * self.allowed[:, :, None]

    def standardise(self, z: Tensor) -> Tensor:
        """Batch statistics while training (and track running ones), running ones in eval."""
        if self.training and z.shape[0] > 1:
            mean, var = z.mean(0), z.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (z - mean) / torch.sqrt(var + 1e-5)

    def conditioner(self, z: Tensor) -> tuple[Tensor, Tensor]:
        zs = self.standardise(z)
        # [n, K] @ [K, K*H] -> every child's first layer at once
        h = (zs @ self.masked_w1().reshape(self.k, -1)).reshape(-1, self.k, self.hidden) + self.b1
        h = F.leaky_relu(h, LEAKY_SLOPE)
        out = torch.einsum("nih,iho->nio", h, self.w2) + self.b2
        mu, s = out[..., 0], out[..., 1]
        return mu, 6.0 * torch.tanh(s / 6.0)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """eps [n, K] and log|det d eps / d z| [n]."""
        mu, s = self.conditioner(z)
        eps = (z - mu) * torch.exp(-s)
        return eps, -s.sum(1)

    def log_prob(self, z: Tensor) -> Tensor:
        eps, logdet = self(z)
        return -0.5 * (eps.pow(2) + LOG_2PI).sum(1) + logdet

    def edge_strengths(self) -> Tensor:
        """[parent, child]: norm of parent j's first-layer weights in child i's conditioner times the
        norm of i's output layer (a path norm); exactly 0 where not allowed.

        The product is what makes the strength a property of the function: LeakyReLU is positively
        homogeneous, so (W1, b1) * c with W2 / c is the same conditioner, and a bare first-layer
        norm could be shrunk at no cost (the gauge escape of METHOD 3b); it also makes strengths
        of edges into different children comparable, which the relative read-out rule needs.
        """
        return self.masked_w1().norm(dim=2) * self.w2.norm(dim=(1, 2))[None, :]

    def group_lasso(self, which: Tensor) -> Tensor:
        return (self.edge_strengths() * which.float()).sum()

    def output_l2(self) -> Tensor:
        return self.w2.pow(2).sum()


def gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


# ---------------------------------------------------------------------------------------------
# The whole model


class MultimodalCRL(nn.Module):
    """Encoders, decoders and the causal flow; `loss(batch)` is the training objective.

    `layouts` are in causal-layer order; latent columns follow that order, k within modality.
    """

    def __init__(self, layouts: list[ModalityLayout], config: ModelConfig):
        super().__init__()
        if config.order_free:
            raise NotImplementedError(
                "order-free mode (acyclicity penalty) is not implemented yet; give a causal order of "
                "modalities instead (the default is the order they are listed)"
            )
        if config.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {config.encoder!r}; known: {sorted(ENCODERS)}")
        self.layouts = list(layouts)
        self.config = config
        self.names = [layout.name for layout in layouts]
        counts = [layout.latents for layout in layouts]
        self.encoders = nn.ModuleList([ENCODERS[config.encoder](lay, config) for lay in layouts])
        # Optional (ModelConfig.standardise_codes): posterior means standardised over the batch, as in
        # BN-VAE, so no code can collapse to the prior. It did stop collapsed latents on the
        # simulations but lowered MCC overall (case1 0.65 vs 0.99), so it is off by default.
        self.code_norms = nn.ModuleList(
            [nn.BatchNorm1d(lay.code_dim, affine=False) if config.standardise_codes else nn.Identity()
             for lay in layouts]
        )
        self.decoders = nn.ModuleList([MLPDecoder(lay, config) for lay in layouts])
        allowed = allowed_parents(counts)
        self.register_buffer("cross_modal", cross_modal_mask(counts) & allowed)
        self.flow = CausalFlow(allowed, config.flow_hidden)

    @property
    def total_latents(self) -> int:
        return sum(layout.latents for layout in self.layouts)

    def encode(self, xs: list[Tensor], masks: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Posterior (mean, logvar) of (z, eta) per modality; xs have NaN replaced by 0."""
        posts = []
        for enc, norm, x, m in zip(self.encoders, self.code_norms, xs, masks):
            mean, logvar = enc(x, m)
            posts.append((norm(mean) if mean.shape[0] > 1 or not self.training else mean, logvar))
        return posts

    def posterior_mean_latents(self, xs: list[Tensor], masks: list[Tensor]) -> Tensor:
        posts = self.encode(xs, masks)
        return torch.cat([mean[:, : lay.latents] for (mean, _), lay in zip(posts, self.layouts)], dim=1)

    def loss(
        self,
        xs: list[Tensor],
        masks: list[Tensor],
        generator: torch.Generator | None = None,
        kl_scale: float = 1.0,
    ) -> dict:
        """Loss terms averaged over the batch. `generator` fixes the reparameterisation noise
        (used for a validation loss that does not jitter between epochs); `kl_scale` < 1 during a
        KL warm-up (the reported terms are unscaled)."""
        cfg = self.config
        # whatever sits in a masked cell (0, junk) must not reach the encoder or the loss
        xs = [torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device)) for x, m in zip(xs, masks)]
        posts = self.encode(xs, masks)
        rec = xs[0].new_zeros(())
        log_q = xs[0].new_zeros(xs[0].shape[0])
        log_p_eta = xs[0].new_zeros(xs[0].shape[0])
        zs = []
        for (mean, logvar), x, mask, dec, lay in zip(posts, xs, masks, self.decoders, self.layouts):
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            code = mean + torch.exp(0.5 * logvar) * noise
            log_q = log_q + (-0.5 * (LOG_2PI + logvar + noise.pow(2))).sum(1)
            z, eta = code[:, : lay.latents], code[:, lay.latents :]
            zs.append(z)
            log_p_eta = log_p_eta + (-0.5 * (LOG_2PI + eta.pow(2))).sum(1)
            x_hat = dec(z, eta)
            # Gaussian NLL with fixed variance per standardised column; masked cells add nothing
            rec = rec + (0.5 * (x - x_hat).pow(2) * mask).sum(1).mean() / cfg.recon_variance
        log_p_z = self.flow.log_prob(torch.cat(zs, dim=1))
        kl = (log_q - log_p_z - log_p_eta).mean()
        sparsity = self.flow.group_lasso(self.cross_modal)
        loss = cfg.a_rec * rec + kl_scale * cfg.a_ind * kl + cfg.a_sp * sparsity + cfg.flow_l2 * self.flow.output_l2()
        return {"loss": loss, "rec": rec.detach(), "kl": kl.detach(), "sparsity": sparsity.detach()}


def build_model(layouts: list[ModalityLayout], config: ModelConfig) -> MultimodalCRL:
    return MultimodalCRL(layouts, config)


def split_missing(x: Tensor) -> tuple[Tensor, Tensor]:
    """NaN = missing: (x with NaN -> 0, float mask of observed cells)."""
    observed = ~torch.isnan(x)
    return torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device)), observed.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# Graph read-out on fixed latents


def standardise_columns(x: Tensor) -> Tensor:
    """Each column to mean 0, standard deviation 1 (constant columns left at 0): the scale the
    read-out flow refits see, so edge strengths compare across runs."""
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6)


def refit_flow(
    latents: Tensor,
    allowed: Tensor,
    hidden: int,
    penalised: Tensor,
    penalty: float,
    output_l2: float,
    steps: int = 600,
    lr: float = 1e-2,
    batch_size: int = 4096,
    seed: int = 0,
) -> tuple[CausalFlow, float]:
    """Fit a fresh causal flow to fixed (standardised) latents with a group lasso on `penalised`
    edges; returns the flow and its mean NLL per subject on all rows (no penalty)."""
    gen = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    flow = CausalFlow(allowed, hidden).to(latents.device)
    torch.random.set_rng_state(torch_state)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    n = latents.shape[0]
    for step in range(steps):
        if n > batch_size:
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(latents.device)
            batch = latents[idx]
        else:
            batch = latents
        loss = -flow.log_prob(batch).mean() + penalty * flow.group_lasso(penalised)
        loss = loss + output_l2 * flow.output_l2()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == steps // 2:
            for group in opt.param_groups:
                group["lr"] = lr / 5
    flow.eval()
    with torch.no_grad():
        nll = float(-torch.cat([flow.log_prob(c) for c in latents.split(65536)]).mean())
    return flow, nll
