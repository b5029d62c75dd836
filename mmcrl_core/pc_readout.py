"""The PC read-out: causal-learn's PC over a run's latents plus phenotypes the user picks, as the
paper did on its human data (METHOD 3: Fisher-z test, alpha 0.1 in the derivative code).

Background knowledge, fixed before looking at the data:
- modality order: latents of a later modality never cause latents of an earlier one (tiers);
- exogenous phenotypes (age and sex by default): nothing causes them, so every edge into them is
  forbidden. An edge between two exogenous variables is forbidden both ways, hence removed.
causal-learn applies the knowledge in skeleton search, collider orientation and Meek's rules; a
last check here makes the guarantee independent of the library's version.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from .errors import UserInputError

TESTS = {"fisherz": "fisherz", "kci": "kci"}
KCI_MAX_ROWS = 400  # the kernel test is cubic in rows; subsample beyond this (seeded)
EXOGENOUS_PATTERN = re.compile(r"^(age|sex|gender)([ _\-.(].*)?$", re.IGNORECASE)


def default_exogenous(columns) -> list[str]:
    """Phenotype columns named like age / sex / gender (e.g. 'Age', 'sex_at_birth', 'age (years)')."""
    return [c for c in columns if EXOGENOUS_PATTERN.match(str(c).strip())]


def numeric_phenotypes(phenotypes: pd.DataFrame) -> pd.DataFrame:
    """Numbers as they are; a two-level column (e.g. sex M / F) as 0 / 1; anything else is an error."""
    out = pd.DataFrame(index=phenotypes.index)
    for column in phenotypes.columns:
        values = phenotypes[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum():
            out[column] = numeric.astype(float)
            continue
        levels = sorted(values.dropna().astype(str).unique())
        if len(levels) != 2:
            raise UserInputError(
                f"phenotype column {column!r} is neither numeric nor two-level ({len(levels)} levels); "
                "PC needs numbers: recode it or leave it out"
            )
        out[column] = values.astype("string").map({levels[0]: 0.0, levels[1]: 1.0}).astype(float)
    return out


def read_phenotypes_csv(path: Path | str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"phenotypes file {path} does not exist")
    frame = pd.read_csv(path)
    if frame.shape[1] < 2:
        raise UserInputError(f"{path}: needs a subject id column first, then phenotype columns")
    frame[frame.columns[0]] = frame[frame.columns[0]].astype(str)
    return frame.set_index(frame.columns[0])


def background_knowledge(names: list[str], tiers: dict[str, int], exogenous: list[str]):
    from causallearn.graph.GraphNode import GraphNode
    from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge

    knowledge = BackgroundKnowledge()
    nodes = {name: GraphNode(name) for name in names}
    for name, tier in tiers.items():
        knowledge.add_node_to_tier(nodes[name], int(tier))
    for target in exogenous:
        for source in names:
            if source != target:
                knowledge.add_forbidden_by_node(nodes[source], nodes[target])
    return knowledge


def _forbidden(source: str, target: str, tiers: dict[str, int], exogenous: set[str]) -> bool:
    if target in exogenous:
        return True
    return source in tiers and target in tiers and tiers[source] > tiers[target]


def run_pc(
    data: pd.DataFrame,
    *,
    tiers: dict[str, int] | None = None,
    exogenous: list[str] | None = None,
    test: str = "fisherz",
    alpha: float = 0.1,
    seed: int = 0,
    kci_max_rows: int = KCI_MAX_ROWS,
) -> list[dict]:
    """PC on the columns of `data` (rows with a missing value dropped).

    Returns edges as dicts: source, target, orientation ("directed" | "undirected"), weight
    (|Pearson r| of the pair, to size edges). An unoriented edge is listed once.
    """
    if test not in TESTS:
        raise UserInputError(f"unknown independence test {test!r}; choose fisherz or kci")
    if not 0 < alpha < 1:
        raise UserInputError(f"alpha must be between 0 and 1, got {alpha}")
    tiers = dict(tiers or {})
    exogenous = [e for e in (exogenous or []) if e in data.columns]
    complete = data.dropna()
    constant = [c for c in complete.columns if complete[c].nunique() < 2]
    if constant:
        raise UserInputError(f"PC cannot use constant columns: {', '.join(map(str, constant))}")
    if len(complete) < max(10, data.shape[1] + 3):
        raise UserInputError(
            f"PC needs more complete rows than variables: {len(complete)} complete rows for {data.shape[1]} variables"
        )
    if test == "kci" and len(complete) > kci_max_rows:
        complete = complete.sample(kci_max_rows, random_state=seed)
    names = [str(c) for c in complete.columns]
    if len(set(names)) != len(names):
        raise UserInputError("PC variables must have distinct names")

    from causallearn.search.ConstraintBased.PC import pc

    standardised = (complete - complete.mean()) / complete.std(ddof=0)
    result = pc(
        standardised.to_numpy(dtype=float),
        alpha=alpha,
        indep_test=TESTS[test],
        background_knowledge=background_knowledge(names, tiers, exogenous),
        node_names=names,
        show_progress=False,
    )
    matrix = result.G.graph  # causal-learn: [j, i] == 1 and [i, j] == -1 means i -> j
    correlation = np.corrcoef(standardised.to_numpy(dtype=float), rowvar=False)
    exogenous_set = set(exogenous)
    edges = []
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j or matrix[i, j] == 0 or matrix[j, i] == 0:
                continue
            weight = abs(float(correlation[i, j])) if math.isfinite(correlation[i, j]) else 0.0
            if matrix[j, i] == 1 and matrix[i, j] == -1:
                source, target, orientation = names[i], names[j], "directed"
            elif i < j and matrix[i, j] == matrix[j, i]:
                # -1/-1 unoriented, 1/1 conflicting colliders: both mean "direction unknown"
                source, target, orientation = names[i], names[j], "undirected"
            else:
                continue
            if _forbidden(source, target, tiers, exogenous_set):
                # the knowledge allows only the other direction (or none): never report this one
                if _forbidden(target, source, tiers, exogenous_set):
                    continue
                source, target, orientation = target, source, "directed"
            elif orientation == "undirected" and _forbidden(target, source, tiers, exogenous_set):
                orientation = "directed"
            edges.append({"source": source, "target": target, "orientation": orientation, "weight": weight})
    return edges


def pc_graph_from_run(
    run_dir: Path | str,
    phenotypes: pd.DataFrame | None = None,
    *,
    test: str = "fisherz",
    alpha: float = 0.1,
    exogenous: list[str] | None = None,
    latents: list[str] | None = None,
    support: dict[tuple[str, str], float] | None = None,
    kci_max_rows: int = KCI_MAX_ROWS,
) -> nx.DiGraph:
    """The PC read-out of a run as a graph with the same attributes as graph.learned_graph.

    phenotypes: indexed by subject id (as latents.csv), the columns the user picked.
    exogenous: phenotypes nothing may cause; default: those named like age / sex / gender.
    """
    from . import runfolder as rf
    from .config import parse_latent_name
    from .graph import PHENOTYPE, PHENOTYPE_MODALITY, add_latent_nodes, load_run_info, provenance

    info = load_run_info(run_dir)
    frame = rf.read_latents(info.run_dir)
    frame.index = frame.index.astype(str)
    chosen = [c for c in (latents or info.latents) if c in frame.columns]
    if not chosen:
        raise UserInputError(f"{rf.LATENTS} of {info.run_dir} has none of the run's latents")
    data = frame[chosen].astype(float)
    pheno_columns: list[str] = []
    if phenotypes is not None and not phenotypes.empty:
        phenotypes = phenotypes.copy()
        phenotypes.index = phenotypes.index.astype(str)
        clash = [c for c in phenotypes.columns if c in data.columns]
        if clash:
            raise UserInputError(f"phenotype columns clash with latent names: {', '.join(map(str, clash))}")
        numeric = numeric_phenotypes(phenotypes)
        data = data.join(numeric, how="inner")
        if data.empty:
            raise UserInputError("no subject ids in common between the phenotypes and the run's latents")
        pheno_columns = [str(c) for c in numeric.columns]
    exogenous = default_exogenous(pheno_columns) if exogenous is None else [e for e in exogenous if e in pheno_columns]
    tier_of = {m: i for i, m in enumerate(info.modality_order)}
    tiers = {name: tier_of.get(parse_latent_name(name)[0], len(tier_of)) for name in chosen}

    edges = run_pc(data, tiers=tiers, exogenous=exogenous, test=test, alpha=alpha, kci_max_rows=kci_max_rows)
    graph = nx.DiGraph(
        **provenance(info, f"PC ({test}, alpha={alpha})", None, alpha=float(alpha), test=test,
                     exogenous=", ".join(exogenous), n_subjects=int(len(data.dropna())))
    )
    add_latent_nodes(graph, info)
    graph.remove_nodes_from([n for n in list(graph) if n not in chosen])
    for column in pheno_columns:
        graph.add_node(column, modality=PHENOTYPE_MODALITY, kind=PHENOTYPE, label=column,
                       description="exogenous: nothing causes it" if column in exogenous else "",
                       tier=len(tier_of))
    support = support or {}
    for edge in edges:
        source, target = edge["source"], edge["target"]
        graph.add_edge(
            source, target,
            weight=edge["weight"],
            cross_modal=graph.nodes[source]["modality"] != graph.nodes[target]["modality"],
            support=float(support.get((source, target), 1.0)),
            method=f"pc-{test}",
            orientation=edge["orientation"],
        )
    return graph
