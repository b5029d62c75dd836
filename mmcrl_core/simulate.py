"""The paper's generative process (METHOD.md section 1) with ground truth, for benchmarks and tests.

Per modality m: latents z^(m) (k_m of them) and a nuisance eta^(m) (e_m of them) are mixed by a
random invertible 3-layer LeakyReLU MLP into d_m observed columns. The latents follow a nonlinear
SEM whose cross-modal edges are sparse (every modality takes part in at least one, and the pattern
satisfies the sparsity condition of METHOD.md section 2 unless a setting deliberately breaks it);
edges inside a modality are free. Cyclic settings draw a contractive cyclic SEM and solve it by
fixed-point iteration.

Named settings cover every numerical experiment of METHOD.md section 5 (see SETTINGS).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .config import ModalitySpec, RunSpec, latent_name
from .errors import UserInputError

ID_COLUMN = "subject_id"


class SimulationSettings(BaseModel):
    """Every parameter of the generative process. Per-modality sizes may be one int for all."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    modalities: int = Field(2, ge=2, le=32, description="number of modalities M")
    latents: int | list[int] = Field(2, description="k_m, latents per modality")
    nuisance: int | list[int] = Field(1, description="e_m, nuisance variables per modality")
    obs_dim: int | list[int] = Field(15, description="d_m, observed columns per modality (>= k_m + e_m)")
    n: int = Field(10_000, ge=10, description="subjects")
    cross_edge_prob: float = Field(
        0.15, ge=0, le=1, description="probability of each allowed cross-modal edge (earlier -> later modality)"
    )
    cross_edges_removed: float | None = Field(
        None,
        ge=0,
        le=1,
        description="sparsity ablation: start from ALL allowed cross-modal edges and remove this fraction "
        "(overrides cross_edge_prob; the sparsity condition is then not enforced)",
    )
    within_edge_prob: float = Field(
        0.3, ge=0, le=1, description="probability of each within-modality edge (with enforce_sparsity_condition, "
        "edges along which the child could absorb its parent unseen are dropped: see mixable_within_edges)"
    )
    enforce_sparsity_condition: bool = Field(
        True, description="redraw the cross-modal pattern until it satisfies the sparsity condition"
    )
    mechanism: Literal["mlp", "tanh"] = Field("mlp", description="random 1-hidden-layer MLP or tanh(linear)")
    signal_share: float = Field(
        0.7, gt=0, lt=1, description="share of a child's variance explained by its parents (rest is noise)"
    )
    noise: Literal["gaussian", "laplace", "uniform"] = "gaussian"
    cyclic: Literal["none", "within", "across"] = Field(
        "none", description="add a cycle inside each modality or across modalities (fixed-point SEM)"
    )
    mixing_layers: int = Field(3, ge=1, le=6)
    negative_slope: float = Field(0.2, gt=0, lt=1, description="LeakyReLU slope of the mixing MLP")
    obs_noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to observed columns")

    def per_modality(self, value: int | list[int], what: str) -> list[int]:
        values = [value] * self.modalities if isinstance(value, int) else list(value)
        if len(values) != self.modalities:
            raise UserInputError(f"{what} lists {len(values)} values but there are {self.modalities} modalities")
        return values

    def modality_names(self) -> list[str]:
        return [f"m{i + 1}" for i in range(self.modalities)]

    def sizes(self) -> tuple[list[int], list[int], list[int]]:
        k = self.per_modality(self.latents, "latents")
        e = self.per_modality(self.nuisance, "nuisance")
        d = self.per_modality(self.obs_dim, "obs_dim")
        for m, (km, em, dm) in enumerate(zip(k, e, d)):
            if km < 1 or em < 0:
                raise UserInputError(f"modality m{m + 1}: need at least 1 latent and >= 0 nuisance variables")
            if dm < km + em:
                raise UserInputError(
                    f"modality m{m + 1}: obs_dim {dm} < latents {km} + nuisance {em}; the mixing must be "
                    "invertible, so use at least latents + nuisance observed columns"
                )
        return k, e, d


def _setting(name: str, **kwargs) -> SimulationSettings:
    return SimulationSettings(name=name, **kwargs)


# METHOD.md section 5. Where the paper is silent (base shape of the cyclic, sparsity and sample-size
# experiments, whether "N observed columns" is per modality) the choice is ours: columns are per
# modality, and the ablations use case 2's shape (2 modalities x 3 latents, 20 columns).
_CASE2 = dict(modalities=2, latents=3, obs_dim=20)
SETTINGS: dict[str, SimulationSettings] = {
    s.name: s
    for s in [
        _setting("tiny", modalities=2, latents=2, obs_dim=6, n=1_000),
        _setting("case1", modalities=2, latents=2, obs_dim=15),
        _setting("case2", **_CASE2),
        _setting("case3", modalities=4, latents=2, obs_dim=30),
        _setting("mod5", modalities=5, latents=2, obs_dim=30, cross_edge_prob=0.1),
        _setting("mod6", modalities=6, latents=2, obs_dim=30, cross_edge_prob=0.08),
        _setting("mod8", modalities=8, latents=2, obs_dim=30, cross_edge_prob=0.06),
        _setting("cyclic_within", cyclic="within", **_CASE2),
        _setting("cyclic_across", cyclic="across", **_CASE2),
        _setting("sparsity_0", cross_edges_removed=0.0, enforce_sparsity_condition=False, **_CASE2),
        _setting("sparsity_25", cross_edges_removed=0.25, enforce_sparsity_condition=False, **_CASE2),
        _setting("sparsity_50", cross_edges_removed=0.5, enforce_sparsity_condition=False, **_CASE2),
        _setting("n_10k", n=10_000, **_CASE2),
        _setting("n_20k", n=20_000, **_CASE2),
        _setting("n_40k", n=40_000, **_CASE2),
    ]
}


@dataclass
class SimulatedData:
    observed: dict[str, pd.DataFrame]  # modality -> (n x d_m), index "subject_id"
    latents: pd.DataFrame  # n x K, columns "<modality>:<k>", index "subject_id"
    adjacency: pd.DataFrame  # K x K 0/1, index = parent, columns = child
    settings: SimulationSettings
    seed: int = 0
    sparsity_condition: bool = True

    @property
    def modality_names(self) -> list[str]:
        return list(self.observed)

    def modality_of(self) -> dict[str, str]:
        return {name: name.rpartition(":")[0] for name in self.latents.columns}

    def arrays(self) -> dict[str, np.ndarray]:
        """Observed tables as float32 arrays (already standardised), the input of train.fit."""
        return {m: df.to_numpy(dtype=np.float32) for m, df in self.observed.items()}

    def run_spec(self, **overrides) -> RunSpec:
        """A RunSpec with the true numbers of latents and nuisance per modality."""
        k, e, _ = self.settings.sizes()
        modalities = [
            ModalitySpec(name=m, latents=km, nuisance=em, columns=list(self.observed[m].columns))
            for m, km, em in zip(self.modality_names, k, e)
        ]
        return RunSpec(modalities=modalities, name=f"sim:{self.settings.name}", **overrides)


# ----------------------------------------------------------------------------- graph


def cross_modal_neighbourhoods(adjacency: np.ndarray, block: np.ndarray) -> list[frozenset[int]]:
    """For each latent, the set of latents in OTHER modalities it is linked to (as parent or child)."""
    k = adjacency.shape[0]
    linked = (adjacency != 0) | (adjacency.T != 0)
    return [frozenset(j for j in range(k) if linked[i, j] and block[j] != block[i]) for i in range(k)]


def satisfies_sparsity_condition(adjacency: np.ndarray, block: np.ndarray) -> bool:
    """Our operational check of METHOD.md section 2's sparsity condition.

    Mixing latents i and j of one modality gives the mix the union of their cross-modal
    neighbourhoods; that adds edges unless one neighbourhood contains the other. So we require, for
    every pair in a modality, neighbourhoods that are not nested (which also makes them non-empty
    and distinct). Within-modality edges cost nothing, but they open a second way to mix: see
    `mixable_within_edges`; none may be left.
    """
    hoods = cross_modal_neighbourhoods(adjacency, block)
    for i in range(len(hoods)):
        for j in range(len(hoods)):
            if i != j and block[i] == block[j] and hoods[i] <= hoods[j]:
                return False
    return not mixable_within_edges(adjacency, block).any()


def mixable_within_edges(adjacency: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Bool [parent, child]: within-modality edges j -> i along which i is not identifiable.

    With additive noise, z_i' = z_i + h(z_j) has the same likelihood as z_i (the conditional of z_i'
    given pa(i), which holds j, is a shift of z_i's) and the same cross-modal parents; it adds a
    cross-modal edge only if i has a cross-modal child that j does not already drive. So a child
    whose cross-modal children are all children of its within-modality parent (every latent of the
    last modality, which has none) can absorb any function of that parent at no cost to the
    estimator: on case 2 drawn with such edges, the child's MCC fell to about 0.5-0.8 while the same
    graph without them gave 0.97.
    """
    edges = adjacency != 0
    cross = block[:, None] != block[None, :]
    cross_children = edges & cross
    mixable = np.zeros_like(edges)
    for j, i in zip(*np.nonzero(edges & ~cross)):
        mixable[j, i] = not np.any(cross_children[i] & ~cross_children[j])
    return mixable


def every_modality_has_cross_edge(adjacency: np.ndarray, block: np.ndarray) -> bool:
    hoods = cross_modal_neighbourhoods(adjacency, block)
    return all(any(hoods[i] for i in np.flatnonzero(block == b)) for b in np.unique(block))


def _allowed_cross(block: np.ndarray) -> np.ndarray:
    """Allowed cross-modal edges i -> j: parent in an earlier modality (the paper's causal order)."""
    return block[:, None] < block[None, :]


def _draw_cross_edges(s: SimulationSettings, block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    allowed = _allowed_cross(block)
    if s.cross_edges_removed is not None:
        pairs = np.argwhere(allowed)
        n_remove = int(round(s.cross_edges_removed * len(pairs)))
        edges = allowed.copy()
        for i, j in pairs[rng.permutation(len(pairs))[:n_remove]]:
            edges[i, j] = False
        return edges
    for _ in range(2_000):
        edges = allowed & (rng.random(allowed.shape) < s.cross_edge_prob)
        edges = _repair(edges, allowed, block, rng, s.enforce_sparsity_condition)
        if edges is not None:
            return edges
    raise RuntimeError(f"could not draw a cross-modal pattern for setting {s.name!r}; raise cross_edge_prob")


def _repair(edges, allowed, block, rng, enforce: bool) -> np.ndarray | None:
    """Add random allowed edges until every modality has one (and the sparsity condition holds)."""
    edges = edges.copy()
    for _ in range(50):
        hoods = cross_modal_neighbourhoods(edges, block)
        lonely = [b for b in np.unique(block) if not any(hoods[i] for i in np.flatnonzero(block == b))]
        if not lonely and (not enforce or satisfies_sparsity_condition(edges, block)):
            return edges
        # give a new edge to a latent of a lonely modality, or to the nested member of a bad pair
        if lonely:
            candidates = list(np.flatnonzero(block == lonely[0]))
        else:
            candidates = [i for i in range(len(block)) for j in range(len(block))
                          if i != j and block[i] == block[j] and hoods[i] <= hoods[j]]
        i = candidates[rng.integers(len(candidates))]
        options = [(p, c) for p, c in np.argwhere(allowed & ~edges) if i in (p, c)]
        if not options:
            return None
        p, c = options[rng.integers(len(options))]
        edges[p, c] = True
    return None


def _draw_graph(s: SimulationSettings, block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = len(block)
    edges = _draw_cross_edges(s, block, rng)
    same = (block[:, None] == block[None, :]) & ~np.eye(k, dtype=bool)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # acyclic within a modality: index order
    edges |= same & upper & (rng.random((k, k)) < s.within_edge_prob)
    if s.enforce_sparsity_condition:  # drop within-modality edges that would break identifiability
        edges &= ~mixable_within_edges(edges, block)
    if s.cyclic == "within":
        edges = _add_within_cycles(edges, block, s.enforce_sparsity_condition)
    elif s.cyclic == "across":
        # close a loop through the first latent of each modality: m1 -> m2 -> ... -> mM -> m1
        firsts = [int(np.flatnonzero(block == b)[0]) for b in np.unique(block)]
        for a, c in zip(firsts, firsts[1:] + firsts[:1]):
            edges[a, c] = True
    return edges.astype(int)


def _add_within_cycles(edges: np.ndarray, block: np.ndarray, keep_identifiable: bool) -> np.ndarray:
    """A directed cycle through all latents of each modality. With keep_identifiable, only in the
    modalities where no cycle edge is mixable (mixable_within_edges): a cycle among latents without
    cross-modal children of their own (the last modality's) leaves them unidentifiable, so a
    benchmark on it measures the broken condition, not the cycle (with cycles in both modalities,
    cyclic_within's seed 0 gave MCC 0.54, both modalities below 0.6). Where no modality can take a
    cycle, every modality gets one and the data set reports sparsity_condition False."""
    cycles = []
    for b in np.unique(block):
        idx = np.flatnonzero(block == b)
        if len(idx) >= 2:
            cycle = np.zeros_like(edges)
            cycle[idx, np.roll(idx, -1)] = True
            cycles.append(cycle)
    if keep_identifiable:
        kept = [c for c in cycles if not (mixable_within_edges(edges | c, block) & c).any()]
        cycles = kept or cycles
    for cycle in cycles:
        edges = edges | cycle
    return edges


# ----------------------------------------------------------------------------- mechanisms


def _noise(kind: str, size, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal(size)
    if kind == "laplace":
        return rng.laplace(scale=1 / np.sqrt(2), size=size)
    return rng.uniform(-np.sqrt(3), np.sqrt(3), size=size)


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-12)


class _Mechanism:
    """f_i(parents): a random 1-hidden-layer tanh MLP or tanh of a linear map, parent weights >= 0.5."""

    def __init__(self, n_parents: int, kind: str, rng: np.random.Generator, hidden: int = 8):
        signs = rng.choice([-1.0, 1.0], size=n_parents)
        self.kind = kind
        if kind == "tanh":
            self.w = signs * rng.uniform(0.5, 1.5, n_parents)
        else:
            self.w1 = rng.normal(size=(n_parents, hidden))
            # give each parent a guaranteed share of the input weight so no edge is near-zero
            self.w1 *= rng.uniform(0.5, 1.5, (n_parents, 1)) / np.linalg.norm(self.w1, axis=1, keepdims=True)
            self.w1 *= 2.0
            self.b1 = rng.normal(scale=0.5, size=hidden)
            self.w2 = rng.normal(size=hidden)

    def __call__(self, parents: np.ndarray) -> np.ndarray:
        if self.kind == "tanh":
            return np.tanh(parents @ self.w)
        return np.tanh(parents @ self.w1 + self.b1) @ self.w2


def _sample_latents(s: SimulationSettings, adjacency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = adjacency.shape[0]
    eps = _noise(s.noise, (s.n, k), rng)
    mechanisms = [_Mechanism(int(adjacency[:, i].sum()), s.mechanism, rng) if adjacency[:, i].any() else None
                  for i in range(k)]
    a, b = np.sqrt(s.signal_share), np.sqrt(1 - s.signal_share)
    if s.cyclic == "none":
        z = np.zeros((s.n, k))
        for i in _topological_order(adjacency):
            parents = np.flatnonzero(adjacency[:, i])
            if len(parents):
                z[:, i] = a * _standardise(mechanisms[i](z[:, parents])) + b * eps[:, i]
            else:
                z[:, i] = eps[:, i]
        return _standardise(z)
    # Cyclic: z = F(z) + noise with F a contraction (tanh is 1-Lipschitz and the absolute weights of
    # each child's parents sum to 0.8 < 1, a contraction in the max norm), so the fixed-point
    # iteration converges to the unique equilibrium of each subject.
    # positive weights: a feedback loop with opposite signs can cancel the pair's dependence
    weights = adjacency * rng.uniform(0.5, 1.5, adjacency.shape)
    col_sums = np.abs(weights).sum(0)
    weights = np.where(col_sums > 0, weights / np.maximum(col_sums, 1e-12) * 0.8, 0.0)
    z = eps.copy()
    for _ in range(200):
        z_next = np.tanh(z) @ weights + eps * np.where(adjacency.any(0), 0.5, 1.0)
        if np.max(np.abs(z_next - z)) < 1e-10:
            break
        z = z_next
    return _standardise(z)


def _topological_order(adjacency: np.ndarray) -> list[int]:
    remaining = set(range(adjacency.shape[0]))
    order: list[int] = []
    while remaining:
        ready = [i for i in sorted(remaining) if not any(adjacency[p, i] for p in remaining if p != i)]
        if not ready:
            raise ValueError("graph has a cycle; use cyclic settings for cyclic graphs")
        order += ready
        remaining -= set(ready)
    return order


def is_acyclic(adjacency: np.ndarray) -> bool:
    try:
        _topological_order(np.asarray(adjacency))
        return True
    except ValueError:
        return False


def _mix(source: np.ndarray, d: int, s: SimulationSettings, rng: np.random.Generator) -> np.ndarray:
    """Random invertible LeakyReLU MLP: a full-column-rank lift to d, then square orthogonal layers."""
    p = source.shape[1]
    q, _ = np.linalg.qr(rng.normal(size=(d, p)))  # d x p with orthonormal columns: injective
    h = source @ (q * rng.uniform(0.8, 1.25, p)).T
    for _ in range(s.mixing_layers - 1):
        h = np.where(h > 0, h, s.negative_slope * h)  # invertible elementwise
        w, _ = np.linalg.qr(rng.normal(size=(d, d)))
        h = h @ w.T
    return h


def simulate(settings: SimulationSettings | str, seed: int = 0, n: int | None = None) -> SimulatedData:
    """Draw one data set. Deterministic in (settings, seed, n)."""
    s = resolve_settings(settings)
    if n is not None:
        s = s.model_copy(update={"n": int(n)})
    k, e, d = s.sizes()
    names = s.modality_names()
    block = np.repeat(np.arange(s.modalities), k)
    rng = np.random.default_rng(seed)
    adjacency = _draw_graph(s, block, rng)
    z = _sample_latents(s, adjacency, rng)
    ids = pd.Index([f"s{i:06d}" for i in range(s.n)], name=ID_COLUMN)
    observed = {}
    start = 0
    for name, km, em, dm in zip(names, k, e, d):
        eta = _noise(s.noise, (s.n, em), rng)
        x = _mix(np.hstack([z[:, start:start + km], eta]), dm, s, rng)
        if s.obs_noise > 0:
            x = x + s.obs_noise * x.std(0) * rng.standard_normal(x.shape)
        observed[name] = pd.DataFrame(_standardise(x), index=ids, columns=[f"{name}_x{j + 1}" for j in range(dm)])
        start += km
    latent_names = [latent_name(name, j + 1) for name, km in zip(names, k) for j in range(km)]
    return SimulatedData(
        observed=observed,
        latents=pd.DataFrame(z, index=ids, columns=latent_names),
        adjacency=pd.DataFrame(adjacency, index=pd.Index(latent_names, name="parent"), columns=latent_names),
        settings=s,
        seed=seed,
        sparsity_condition=satisfies_sparsity_condition(adjacency, block),
    )


def resolve_settings(settings: SimulationSettings | str) -> SimulationSettings:
    if isinstance(settings, SimulationSettings):
        return settings
    if settings not in SETTINGS:
        raise UserInputError(f"unknown setting {settings!r}; valid settings: {', '.join(SETTINGS)}")
    return SETTINGS[settings]


def write_simulation(data: SimulatedData, out_dir: str | Path) -> Path:
    """DIR/<modality>.csv, DIR/truth/latents.csv, DIR/truth/adjacency.csv, DIR/truth/settings.json."""
    out = Path(out_dir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for name, frame in data.observed.items():
        frame.to_csv(out / f"{name}.csv", float_format="%.6g")
    data.latents.to_csv(out / "truth" / "latents.csv", float_format="%.6g")
    data.adjacency.to_csv(out / "truth" / "adjacency.csv")
    meta = {"seed": data.seed, "sparsity_condition": data.sparsity_condition, **data.settings.model_dump()}
    (out / "truth" / "settings.json").write_text(json.dumps(meta, indent=2))
    return out


# ----------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate multimodal data with known latents and graph",
        description="Simulate data from the paper's generative process. Start from a named setting "
        f"({', '.join(SETTINGS)}) and optionally override its sizes.",
    )
    p.add_argument("--setting", default="case1", help="named setting (default case1)")
    p.add_argument("--modalities", type=int, help="number of modalities")
    p.add_argument("--latents", type=int, help="latents per modality")
    p.add_argument("--eta", type=int, help="nuisance variables per modality")
    p.add_argument("--obs-dim", type=int, help="observed columns per modality")
    p.add_argument("--n", type=int, help="subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(handler=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    base = resolve_settings(args.setting)
    overrides = {key: value for key, value in {
        "modalities": args.modalities, "latents": args.latents, "nuisance": args.eta,
        "obs_dim": args.obs_dim, "n": args.n}.items() if value is not None}
    if overrides:
        try:
            base = SimulationSettings(**{**base.model_dump(), **overrides, "name": f"{base.name}+custom"})
        except ValueError as exc:
            raise UserInputError(f"invalid simulation parameters: {exc}") from exc
    data = simulate(base, seed=args.seed)
    out = write_simulation(data, args.out)
    print(f"wrote {len(data.observed)} modality tables, n={base.n}, K={data.latents.shape[1]} latents "
          f"and the truth to {out}")
    return 0
