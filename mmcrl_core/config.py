"""Typed configuration: what a run is made of.

A RunSpec is everything needed to reproduce a run: where the data came from, how modalities are
laid out, the model and the training settings. It is stored in full in the run's manifest.json.
Field names are part of the contract with the CLI, the app and saved manifests: add fields with
defaults, never rename.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Modality names end up in latent names "<modality>:<k>", file names and HTML: keep them tame.
MODALITY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,63}$")


def latent_name(modality: str, k: int) -> str:
    """Name of latent k (1-based) of a modality, as used in every output file."""
    return f"{modality}:{k}"


def parse_latent_name(name: str) -> tuple[str, int]:
    modality, _, k = name.rpartition(":")
    return modality, int(k)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModalitySpec(_Strict):
    """One modality: a block of observed columns with its own latents and nuisance."""

    name: str
    latents: int = Field(2, ge=1, le=64, description="k_m, latent causal variables of this modality")
    nuisance: int = Field(1, ge=0, le=64, description="dimension of the modality-specific nuisance eta")
    columns: list[str] = Field(default_factory=list, description="observed (preprocessed) columns")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not MODALITY_NAME_PATTERN.match(value):
            raise ValueError(
                f"modality name {value!r} must start with a letter or digit and use only letters, digits, "
                "space, '_', '-' or '.' (at most 64 characters)"
            )
        return value


class ModelConfig(_Strict):
    """The estimator of METHOD.md section 3 (with our decisions of section 3b)."""

    hidden: int = Field(128, ge=4, description="width of encoder / decoder MLPs")
    depth: int = Field(3, ge=1, le=8, description="hidden layers of encoder / decoder MLPs")
    flow_hidden: int = Field(16, ge=2, description="width of each latent's conditioner in the causal flow")
    recon_variance: float = Field(0.3, gt=0, description="Gaussian variance per standardised column")
    a_rec: float = Field(1.0, ge=0, description="weight of the reconstruction term")
    a_ind: float = Field(1.0, ge=0, description="weight of the KL (independence) term")
    a_sp: float = Field(
        # chosen on held-out data seeds 1-2 of case1-3 (3 training seeds each; the benchmark scores seed 0):
        # 0.01 / 0.03 / 0.06 gave mean selected MCC 0.907 / 0.914 / 0.932, worst modality 0.855 / 0.863 /
        # 0.917, cross-modal F1 0.73 / 0.77 / 0.83; weaker penalties let two latents of a modality mix
        # along a within-modality edge while the cross-modal graph turns dense
        0.06, ge=0, description="weight of the group lasso on cross-modal edge strengths (path norms)"
    )
    causal_order: list[str] | None = Field(
        None, description="modality tiers, earliest first; None: the order the modalities are listed"
    )
    order_free: bool = Field(False, description="no modality order; acyclicity penalty instead")
    edge_threshold: float = Field(
        # calibrated on held-out data, never on the benchmark's seed 0: the TRUE latents of data seeds 1-5 of
        # case1-3 and mod5/6/8 with 0 / 10 / 20% leakage from a sibling latent, and the latents learned on
        # data seeds 1-2 of case1-3 (18 runs). Mean cross-modal F1 there, true (per leakage) | learned:
        # 0.5: 0.98 / 0.96 / 0.85 | 0.80; 0.8: 0.97 / 0.96 / 0.90 | 0.85; 1.0: 0.91 / 0.92 / 0.88 | 0.86;
        # the old rule (0.15 x strongest edge): 0.96 / 0.94 / 0.85 | 0.77. A rule relative to the strongest
        # edge let one strong edge (7.2 on case3) raise the bar over true edges of strength 1.
        # Known gap: acyclic settings only. The cyclic simulator's effects are weaker: on the true latents
        # of seeds 1-5, cyclic_within scores F1 0.00 at 0.8 (its edges 0.74-0.78) and 1.00 at 0.7;
        # cyclic_across 0.61 at 0.8, 0.87 at 0.7, 0.91 at 0.6. Recalibrate with them before changing it.
        0.8, gt=0, description="keep an edge whose strength in the read-out refit exceeds this (a path norm "
        "on standardised latents: a linear effect of 0.5 standard deviations scores about 0.8, 0.3 about 0.5)"
    )
    edge_rule: float | None = Field(
        None, gt=0, le=1, description="relative read-out instead of edge_threshold: keep an edge stronger "
        "than this x the strongest edge of its kind (cross-modal / within-modality); runs saved before "
        "edge_threshold existed used 0.15"
    )
    encoder: str = Field("mlp", description="encoder kind (mmcrl_core.model.ENCODERS)")
    standardise_codes: bool = Field(
        False, description="batch-standardise posterior means (BN-VAE); off: it lowered MCC on the simulations"
    )
    flow_l2: float = Field(
        1e-3, ge=0, description="L2 on the conditioners' output layers (keeps the flow's scales bounded)"
    )
    refit_steps: int = Field(600, ge=0, description="Adam steps of the read-out flow refit on the latents")
    refit_penalty: float = Field(
        0.01, ge=0, description="group lasso on every allowed edge during the read-out refit"
    )


class TrainConfig(_Strict):
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0)
    lr_step: int = Field(100, ge=1, description="StepLR step (epochs)")
    lr_gamma: float = Field(0.5, gt=0, le=1)
    patience: int = Field(20, ge=1, description="early stopping on validation loss")
    min_epochs: int = Field(
        150, ge=0, description="no early stop before this epoch: on the simulations some seeds found their best "
        "solution only after a long plateau (case 2: MCC 0.81 stopped at epoch 71, 0.97 when kept to epoch 283)"
    )
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    seed: int = 0
    split_seed: int | None = Field(
        None, description="seed of the train/validation split; None: seed (fit_seeds keeps one split)"
    )
    kl_warmup: int = Field(0, ge=0, description="epochs over which the KL weight rises linearly to a_ind")
    slot_swap_epochs: list[int] = Field(
        default_factory=lambda: [30, 60, 90],
        description="epochs after which a z slot and an eta slot of a modality are swapped when the causal flow "
        "fits the swapped latents better (mmcrl_core.slot_swaps); [] turns the check off",
    )
    slot_swap_margin: float = Field(0.05, ge=0, description="nats per subject a swap must gain")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch threads; None: cores / concurrent runs")
    missing: Literal["mask", "complete"] = Field(
        "mask", description="mask missing cells and modalities out of the loss, or keep complete cases"
    )


class DataSource(_Strict):
    """Where one modality's table came from."""

    modality: str
    path: str
    sha256: str | None = None
    sheet: str | None = None


class RunSpec(_Strict):
    run_id: str | None = None
    name: str | None = None
    dataset_id: str | None = None
    group_id: str | None = None
    id_column: str | None = None
    sources: list[DataSource] = Field(default_factory=list)
    modalities: list[ModalitySpec]
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def modality_order(self) -> list[str]:
        names = [m.name for m in self.modalities]
        order = self.model.causal_order or names
        missing = [n for n in names if n not in order]
        return [n for n in order if n in names] + missing

    def latent_names(self) -> list[str]:
        """All latents in causal-layer order (modality order, then k)."""
        by_name = {m.name: m for m in self.modalities}
        return [latent_name(m, k + 1) for m in self.modality_order() for k in range(by_name[m].latents)]

    def config_hash(self) -> str:
        """Hash of what determines the result (data sources, modalities, model, training)."""
        payload = self.model_dump(exclude={"run_id", "name", "group_id"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
