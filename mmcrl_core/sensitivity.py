"""Decoder sensitivities: which observed features each latent drives.

For modality m the decoder maps (z^(m), eta^(m)) to the observed columns x^(m). The sensitivity of
feature j to latent i is the mean over subjects of |d x_j / d z_i|, evaluated at the subjects'
posterior means of z and eta, so it reflects where the data actually lie rather than the origin.
Jacobians come from torch.func (vmap over subjects of jacrev of a one-subject decoder); decoders
are generic callables, so this works for any model with that signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.func import jacrev, vmap

Decoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z [n,k], eta [n,e]) -> x [n,d]


def decoder_sensitivity(
    decoder: Decoder,
    z: np.ndarray | torch.Tensor,
    eta: np.ndarray | torch.Tensor | None = None,
    latent_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    batch_size: int = 2048,
) -> pd.DataFrame:
    """Mean |d x_j / d z_i| over subjects: a latents x features frame.

    z: (n, k) posterior means of the modality's latents; eta: (n, e) posterior means of its
    nuisance (None or e = 0: a decoder of z alone is called with an empty eta). Subjects are
    processed in batches so memory stays at batch_size x d x k numbers.
    """
    z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not torch.is_tensor(z) else z, dtype=torch.float32)
    n, k = z.shape
    if eta is None:
        eta = torch.zeros((n, 0), dtype=torch.float32)
    eta = torch.as_tensor(np.asarray(eta, dtype=np.float32) if not torch.is_tensor(eta) else eta, dtype=torch.float32)
    finite = torch.isfinite(z).all(dim=1) & torch.isfinite(eta).all(dim=1)  # subjects lacking this modality
    z, eta = z[finite], eta[finite]
    if len(z) == 0:
        raise ValueError("no subject has finite latents for this decoder")

    def one_subject(z_row: torch.Tensor, eta_row: torch.Tensor) -> torch.Tensor:
        return decoder(z_row[None, :], eta_row[None, :])[0]

    jacobian_of_z = vmap(jacrev(one_subject, argnums=0))  # (batch, d, k)
    total = None
    with torch.no_grad():
        for start in range(0, len(z), batch_size):
            jac = jacobian_of_z(z[start : start + batch_size], eta[start : start + batch_size]).abs().sum(dim=0)
            total = jac if total is None else total + jac
    mean_abs = (total / len(z)).T.double().numpy()  # (k, d)
    latent_names = list(latent_names) if latent_names is not None else [f"z{i + 1}" for i in range(k)]
    feature_names = (
        list(feature_names) if feature_names is not None else [f"x{j + 1}" for j in range(mean_abs.shape[1])]
    )
    return pd.DataFrame(mean_abs, index=pd.Index(latent_names, name="latent"), columns=feature_names)


def ranked_features(sensitivity: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """Long table latent, feature, sensitivity, share, rank: each latent's features, strongest first.

    share = the feature's part of the latent's total sensitivity, comparable across latents whose
    scales differ.
    """
    long = sensitivity.rename_axis(index="latent", columns="feature").stack().rename("sensitivity").reset_index()
    long = long.dropna(subset=["sensitivity"])  # NaN: a feature of another modality
    totals = long.groupby("latent")["sensitivity"].transform("sum")
    long["share"] = np.where(totals > 0, long["sensitivity"] / totals.where(totals > 0, 1.0), 0.0)
    long = long.sort_values(["latent", "sensitivity"], ascending=[True, False], kind="stable")
    long["rank"] = long.groupby("latent").cumcount() + 1
    if top is not None:
        long = long[long["rank"] <= top]
    order = {name: i for i, name in enumerate(sensitivity.index)}
    long = long.sort_values(["latent", "rank"], key=lambda col: col.map(order) if col.name == "latent" else col)
    return long.reset_index(drop=True)
