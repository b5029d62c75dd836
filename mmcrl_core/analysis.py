"""What a run's latents mean: associations with measured phenotypes, and the features they drive.

This module ties the pieces to a run folder:
- phenotypes = every numeric or two-valued observed column of the run's dataset (all modalities),
  plus the dataset's covariate table and an optional extra covariate file;
- associations (associations.py) of every latent with every phenotype, optionally adjusted for
  chosen covariates;
- decoder sensitivities (sensitivity.py) from the run's trained decoders, when the model loads;
- the `associate` command of the CLI.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .associations import association_table, correlation_of_latents
from .config import parse_latent_name
from .errors import UserInputError
from .runfolder import MODEL, read_latents, read_manifest

COVARIATES_SOURCE = "covariates"


@dataclass
class Phenotypes:
    """Numeric phenotypes of a run's subjects, aligned to the latents' subject ids."""

    values: pd.DataFrame  # subjects x phenotypes, float (binary coded 0/1), NaN = missing
    sources: dict[str, str] = field(default_factory=dict)  # phenotype -> modality or "covariates"
    coding: dict[str, str] = field(default_factory=dict)  # binary text phenotypes: "1 = <level>"
    skipped: list[str] = field(default_factory=list)  # text columns with more than two values


def _text_id(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip() or None


def text_ids(index: pd.Index | pd.Series) -> pd.Index:
    """Subject ids as text, so '12', 12 and 12.0 match (the rule the data loader applies too)."""
    return pd.Index([_text_id(v) for v in index], name=getattr(index, "name", None), dtype=object)


def numeric_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """Numeric columns as float; two-valued text columns coded 0/1; other text columns skipped."""
    kept: dict[str, pd.Series] = {}
    coding: dict[str, str] = {}
    skipped: list[str] = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            kept[str(column)] = pd.to_numeric(values, errors="coerce").astype(float)
            continue
        levels = sorted(values.dropna().astype(str).unique())
        if len(levels) == 2:
            kept[str(column)] = values.map(lambda v, hi=levels[1]: np.nan if pd.isna(v) else float(str(v) == hi))
            coding[str(column)] = f"1 = {levels[1]}, 0 = {levels[0]}"
        else:
            skipped.append(str(column))
    return pd.DataFrame(kept, index=frame.index), coding, skipped


def _dataset_tables(manifest: dict):
    """The run's raw tables: from the workspace dataset if registered, else from its source files."""
    from .datasets import load_tables

    spec = manifest.get("spec", {})
    dataset_id = spec.get("dataset_id")
    if dataset_id:
        try:
            from .dataset_store import load_dataset

            return load_dataset(dataset_id)
        except Exception:  # dataset deleted or another workspace: the source files may still be there
            pass
    sources = spec.get("sources") or []
    if not sources:
        raise UserInputError("the run's manifest names no data sources; give the phenotypes with --covariates FILE")
    try:
        return load_tables(sources, spec.get("id_column"))
    except UserInputError as exc:
        files = ", ".join(str(s.get("path")) for s in sources)
        raise UserInputError(f"cannot read the run's data ({files}): {exc}") from exc


def load_phenotypes(run_dir: Path, latents: pd.DataFrame, extra_covariates: pd.DataFrame | None = None,
                    manifest: dict | None = None) -> Phenotypes:
    """Every usable observed column of the run's data, the covariates, and `extra_covariates`."""
    manifest = manifest if manifest is not None else read_manifest(run_dir)
    tables = _dataset_tables(manifest)
    blocks: list[tuple[str, pd.DataFrame]] = list(tables.tables.items())
    if tables.covariates is not None and tables.covariates.shape[1]:
        blocks.append((COVARIATES_SOURCE, tables.covariates))
    if extra_covariates is not None:
        blocks.append((COVARIATES_SOURCE, extra_covariates))
    return _assemble(blocks, text_ids(latents.index))


def _assemble(blocks: list[tuple[str, pd.DataFrame]], subject_ids: pd.Index) -> Phenotypes:
    counts: dict[str, int] = {}
    for _, frame in blocks:
        for column in frame.columns:
            counts[str(column)] = counts.get(str(column), 0) + 1
    columns: list[pd.Series] = []
    sources: dict[str, str] = {}
    coding: dict[str, str] = {}
    skipped: list[str] = []
    for source, frame in blocks:
        frame = frame.copy()
        frame.index = text_ids(frame.index)
        frame = frame[~frame.index.duplicated()]
        numeric, block_coding, block_skipped = numeric_columns(frame)
        for column in numeric.columns:
            # a column name used by two tables is told apart by its table
            name = column if counts[column] == 1 else f"{source}/{column}"
            if name in sources:
                continue
            columns.append(numeric[column].reindex(subject_ids).rename(name))
            sources[name] = source
            if column in block_coding:
                coding[name] = block_coding[column]
        skipped += [f"{source}/{c}" for c in block_skipped]
    values = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=subject_ids)
    values.index = subject_ids
    return Phenotypes(values=values, sources=sources, coding=coding, skipped=skipped)


def read_covariate_file(path: str | Path, id_column: str | None = None) -> pd.DataFrame:
    """A covariate table (CSV, TSV, Parquet, Excel) indexed by subject id (text)."""
    from .readers import infer_column_types, read_table

    path = Path(path)
    result = read_table(path)
    if result.frame is None:
        raise UserInputError("; ".join(p.describe() for p in result.problems) or f"cannot read {path}")
    frame = result.frame
    columns = [str(c) for c in frame.columns]
    if id_column is None or id_column not in columns:
        id_column = columns[0]
    ids = pd.Series(text_ids(frame[id_column]))
    if ids.isna().any() or ids.duplicated().any():
        raise UserInputError(f"{path.name}: the id column {id_column!r} has missing or repeated subject ids; "
                             "give one row per subject with its id in the first column")
    body, _ = infer_column_types(frame.drop(columns=[id_column]).reset_index(drop=True), path.name)
    body.index = pd.Index(ids.tolist(), name=id_column, dtype=object)
    return body


def associate(latents: pd.DataFrame, phenotypes: Phenotypes, adjust: list[str] | None = None) -> pd.DataFrame:
    """Association table of every latent with every phenotype (see associations.association_table).

    adjust: phenotype names (e.g. age, sex) to partial out; they are left out of the phenotypes.
    """
    adjust = list(adjust or [])
    unknown = [name for name in adjust if name not in phenotypes.values.columns]
    if unknown:
        available = ", ".join(list(phenotypes.values.columns)[:20])
        raise UserInputError(f"cannot adjust for {', '.join(map(repr, unknown))}: no such numeric or two-valued "
                             f"column; available columns include {available}")
    values = phenotypes.values.drop(columns=adjust)
    latent_values = latents.copy()
    latent_values.index = text_ids(latents.index)
    covariates = phenotypes.values[adjust] if adjust else None
    return association_table(latent_values.astype(float), values, covariates, sources=phenotypes.sources)


def associate_run(run_dir: str | Path, covariates_file: str | Path | None = None,
                  adjust: list[str] | None = None) -> pd.DataFrame:
    """Associations of a run's latents with its phenotypes (plus an optional covariate file)."""
    return analyse_run(run_dir, covariates_file, adjust).associations


def latent_correlations(latents: pd.DataFrame, method: str = "spearman") -> pd.DataFrame:
    return correlation_of_latents(latents.astype(float), method)


@dataclass
class RunAnalysis:
    """Everything the latent browser shows about one run's latents and phenotypes."""

    latents: pd.DataFrame  # subjects (text ids) x latents
    phenotypes: Phenotypes
    associations: pd.DataFrame
    adjust: list[str] = field(default_factory=list)


def analyse_run(run_dir: str | Path, covariates_file: str | Path | None = None,
                adjust: list[str] | None = None) -> RunAnalysis:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    latents = read_latents(run_dir)
    extra = None
    if covariates_file is not None:
        extra = read_covariate_file(covariates_file, manifest.get("spec", {}).get("id_column"))
    phenotypes = load_phenotypes(run_dir, latents, extra, manifest)
    table = associate(latents, phenotypes, adjust)
    latents = latents.astype(float)
    latents.index = text_ids(latents.index)
    return RunAnalysis(latents=latents, phenotypes=phenotypes, associations=table, adjust=list(adjust or []))


def clustered_matrix(associations: pd.DataFrame, value: str = "rho", q_column: str = "q",
                     max_phenotypes: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latents x phenotypes matrices of `value` and its q, rows and columns in clustered order.

    Keeps the `max_phenotypes` phenotypes with the smallest q over all latents (the ones worth
    looking at first); orders rows and columns by average-linkage clustering of their profiles,
    so latents with similar phenotype patterns (and phenotypes with similar latent patterns) sit
    together.
    """
    values = associations.pivot(index="latent", columns="phenotype", values=value)
    qs = associations.pivot(index="latent", columns="phenotype", values=q_column)
    latent_order = list(dict.fromkeys(associations["latent"]))
    values, qs = values.reindex(latent_order), qs.reindex(latent_order)
    best_q = qs.min(axis=0).fillna(1.0)
    strength = values.abs().max(axis=0).fillna(0.0)
    keep = pd.DataFrame({"q": best_q, "strength": -strength}).sort_values(["q", "strength"]).index[:max_phenotypes]
    values, qs = values[keep], qs[keep]
    rows = _leaf_order(values.fillna(0.0).to_numpy())
    cols = _leaf_order(values.fillna(0.0).to_numpy().T)
    return values.iloc[rows, cols], qs.iloc[rows, cols]


def _leaf_order(profiles: np.ndarray) -> list[int]:
    if len(profiles) < 3:
        return list(range(len(profiles)))
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering

    tree = linkage(profiles, method="average", metric="euclidean")
    return leaves_list(optimal_leaf_ordering(tree, profiles)).tolist()


def significance_marks(q: pd.DataFrame | np.ndarray) -> np.ndarray:
    """'***' q < 0.001, '**' q < 0.01, '*' q < 0.05, '' otherwise."""
    q = np.asarray(q, dtype=float)
    marks = np.full(q.shape, "", dtype=object)
    marks[q < 0.05] = "*"
    marks[q < 0.01] = "**"
    marks[q < 0.001] = "***"
    return marks


def browsable_runs(paths=None) -> dict[str, Path]:
    """Finished runs to browse: run id -> folder (registry runs first, then any run folder found)."""
    from .workspace import default_paths

    paths = paths or default_paths()
    found: dict[str, Path] = {}
    try:
        from .run_store import list_runs

        for run in list_runs(paths, statuses=["succeeded"]):
            folder = Path(run.out_dir)
            if (folder / "latents.csv").is_file():
                found[run.id] = folder
    except Exception:  # no registry yet: folders alone will do
        pass
    if paths.models_dir.is_dir():
        for folder in sorted(paths.models_dir.iterdir(), key=lambda f: f.stat().st_mtime, reverse=True):
            if folder.name.startswith(".") or folder.name in found:
                continue
            if (folder / "manifest.json").is_file() and (folder / "latents.csv").is_file():
                found[folder.name] = folder
    return found


# ------------------------------------------------------------------------------ sensitivities


class SensitivityUnavailable(RuntimeError):
    """The run's model cannot be loaded here (no model file, or no loader yet)."""


def run_sensitivities(run_dir: str | Path, max_subjects: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Decoder sensitivities of every latent (rows) on its modality's features (columns).

    One frame over all modalities; a latent's row is NaN outside its own modality. Evaluated at the
    posterior means of up to `max_subjects` subjects (a random subset keeps it fast on big cohorts).
    """
    from .sensitivity import decoder_sensitivity

    if not (Path(run_dir) / MODEL).is_file():
        raise SensitivityUnavailable(f"this run folder has no trained model ({MODEL})")
    try:
        from .infer import load_run
    except ImportError as exc:
        raise SensitivityUnavailable("the model loader (mmcrl_core.infer) is not available") from exc
    try:
        loaded = load_run(Path(run_dir))
    except Exception as exc:  # a damaged or foreign model: the rest of the page still works
        raise SensitivityUnavailable(f"the run's model could not be loaded: {exc}") from exc
    frames = []
    rng = np.random.default_rng(seed)
    for modality, (z, eta) in _posterior_codes(loaded).items():
        if len(z) > max_subjects:
            rows = rng.choice(len(z), max_subjects, replace=False)
            z, eta = z[rows], eta[rows]
        names = [f"{modality}:{k + 1}" for k in range(z.shape[1])]
        frames.append(decoder_sensitivity(loaded.decoder(modality), z, eta, names, loaded.feature_names(modality)))
    if not frames:
        raise SensitivityUnavailable("the run has no decoders")
    return pd.concat(frames, axis=0)


def _posterior_codes(loaded) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Posterior means (z, eta) per modality from a LoadedRun, whichever way it offers them."""
    if hasattr(loaded, "posterior_codes"):
        try:
            codes = loaded.posterior_codes()
            return {m: (np.asarray(z, dtype=np.float32), np.asarray(e, dtype=np.float32))
                    for m, (z, e) in codes.items()}
        except (OSError, UserInputError):  # the training data moved: use the saved latents instead
            pass
    # fall back to the saved latents with eta at its prior mean (0)
    latents = loaded.latents if not callable(getattr(loaded, "latents", None)) else loaded.latents()
    out = {}
    for modality in dict.fromkeys(parse_latent_name(c)[0] for c in latents.columns):
        cols = [c for c in latents.columns if parse_latent_name(c)[0] == modality]
        z = latents[cols].to_numpy(dtype=np.float32)
        nuisance = int(getattr(loaded, "nuisance", {}).get(modality, 0)) if hasattr(loaded, "nuisance") else 0
        out[modality] = (z, np.zeros((len(z), nuisance), dtype=np.float32))
    return out


# -------------------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "associate",
        help="associations of a run's latents with every measured phenotype (Spearman, Pearson, BH q)",
        description="Correlate every latent of a run with every numeric or two-valued column of its data "
        "(all modalities, the covariates, and an optional --covariates file). Writes a CSV with columns "
        "latent, phenotype, n, rho, p, q, pearson_r, pearson_p, pearson_q, source, kind, latent_label; q values are "
        "Benjamini-Hochberg over all tests.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (models/<run id>)")
    p.add_argument("--covariates", metavar="FILE", help="extra table of phenotypes / covariates (id column first)")
    p.add_argument("--adjust", metavar="COL,...", help="partial out these columns (e.g. age,sex)")
    p.add_argument("--out", required=True, metavar="FILE", help="CSV file to write")
    p.set_defaults(handler=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    adjust = [c.strip() for c in (args.adjust or "").split(",") if c.strip()]
    table = associate_run(args.run_dir, args.covariates, adjust)
    # the user's names for latents travel with every export (labels.json, set in the latent browser)
    from .labels import merged_labels
    from .runfolder import read_labels

    labels = merged_labels(list(dict.fromkeys(table["latent"])), read_labels(Path(args.run_dir)))
    table["latent_label"] = table["latent"].map(lambda name: labels[name]["label"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.6g")
    significant = int((table["q"] < 0.05).sum())
    print(f"wrote {len(table)} associations ({significant} with q < 0.05) to {out}")
    return 0
