"""`python -m mmcrl_core train DATA... --out RUN_DIR`: read, preprocess, fit, write the run folder.

Tables are read and checked by datasets.load_tables, preprocessed by preprocessing.Preprocessor
fitted on the training split only (the same split train.fit uses), trained by train.fit and
written by run_writer.write_run. Progress goes to a tqdm bar on stderr and, with --run-id, to the
workspace registry. SIGTERM stops training cleanly: nothing is left at --out.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataSource, ModalitySpec, RunSpec
from .datasets import parse_latents  # one parser for --latents, shared with validate
from .errors import UserInputError


def read_tables(items: Iterable, id_column: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, str], str]:
    """Any number of tables (even a few rows, for encoding) -> ({modality: frame indexed by id},
    {modality: sha256}, id column). Checks files, ids and duplicates, not the subject count."""
    from .datasets import _index_by_id, _RawTable, detect_id_column, parse_source
    from .problems import DataProblemsError, error
    from .readers import read_table, sha256_file

    problems = []
    raws = []
    for item in items:
        try:
            source = parse_source(item)
        except ValueError as exc:
            raise UserInputError(f"{item}: not a data source ({exc}); give NAME=PATH or PATH") from None
        result = read_table(source.path, source.sheet)
        problems.extend(p for p in result.problems if p.is_error)
        if result.frame is not None:
            raws.append(_RawTable(source.modality, Path(source.path).name, result.frame,
                                  sha256_file(Path(source.path)), result.row_offset))
    if problems:
        raise DataProblemsError(problems)
    names = [raw.modality for raw in raws]
    if len(set(names)) != len(names):
        raise UserInputError(f"two tables have the same modality name ({', '.join(names)}); name them NAME=PATH")
    id_column = id_column or detect_id_column([raw.frame for raw in raws])
    if id_column is None:
        raise UserInputError("no subject-id column shared by every table was found; give --id-column COL")
    tables = {}
    for raw in raws:
        frame = _index_by_id(raw, id_column, problems)
        if frame is not None:
            tables[raw.modality] = frame
    if problems and any(p.is_error for p in problems):
        raise DataProblemsError([p for p in problems if p.is_error] or [error("data", "unreadable")])
    return tables, {raw.modality: raw.sha256 for raw in raws}, id_column


def build_spec(args: argparse.Namespace, modality_names: list[str]) -> RunSpec:
    """The run spec: --config (a RunSpec JSON) if given, with every CLI flag given on top."""
    if args.config:
        try:
            spec = RunSpec.model_validate_json(Path(args.config).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserInputError(f"--config {args.config}: file not found") from None
        except ValueError as exc:
            raise UserInputError(f"--config {args.config} is not a valid run spec: {exc}") from None
    else:
        try:
            spec = RunSpec(modalities=[ModalitySpec(name=name) for name in modality_names])
        except ValueError as exc:
            raise UserInputError(f"bad modality name: {exc}") from None
    by_name = {m.name: m for m in spec.modalities}
    latents = parse_latents(args.latents)
    if isinstance(latents, dict):
        unknown = [m for m in latents if m not in modality_names]
        if unknown:
            raise UserInputError(f"--latents names modality {', '.join(unknown)}; the data has {', '.join(modality_names)}")
    nuisance = args.nuisance if args.nuisance is not None else args.eta
    modalities = []
    try:
        for name in modality_names:
            base = by_name.get(name) or ModalitySpec(name=name)
            update = {}
            if isinstance(latents, int):
                update["latents"] = latents
            elif isinstance(latents, dict) and name in latents:
                update["latents"] = latents[name]
            if nuisance is not None:
                update["nuisance"] = nuisance
            modalities.append(ModalitySpec.model_validate({**base.model_dump(), **update}))
    except ValueError as exc:
        raise UserInputError(f"bad modality settings: {exc}") from None
    model = spec.model
    if args.order:
        order = [name.strip() for name in args.order.split(",") if name.strip()]
        unknown = [m for m in order if m not in modality_names]
        if unknown:
            raise UserInputError(f"--order names modality {', '.join(unknown)}; the data has {', '.join(modality_names)}")
        model = model.model_copy(update={"causal_order": order})
    train_update = {
        key: value
        for key, value in {
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "device": args.device, "threads": args.threads,
        }.items()
        if value is not None
    }
    try:
        train = type(spec.train).model_validate({**spec.train.model_dump(), **train_update})
        model = type(model).model_validate(model.model_dump())
    except ValueError as exc:
        raise UserInputError(f"bad training settings: {exc}") from None
    return spec.model_copy(update={
        "modalities": modalities, "model": model, "train": train,
        "run_id": args.run_id or spec.run_id, "id_column": spec.id_column,
    })


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Learn latent causal variables per modality and the graph among them.",
    )
    parser.add_argument("data", nargs="+", metavar="DATA", help="PATH (modality = file stem) or NAME=PATH")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create")
    parser.add_argument("--id-column", default=None, help="subject id column (default: detected)")
    parser.add_argument("--latents", default=None, help="K for every modality, or NAME=K,NAME=K")
    parser.add_argument("--nuisance", type=int, default=None, metavar="E", help="nuisance dimensions per modality")
    parser.add_argument("--eta", type=int, default=None, metavar="E", help="alias of --nuisance")
    parser.add_argument("--order", default=None, help="causal order of modalities, earliest first: NAME,NAME")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--config", default=None, metavar="JSON_FILE", help="a RunSpec JSON; flags override it")
    parser.add_argument("--run-id", default=None, help="registry run id: report progress to the workspace")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=train_command)


def _progress_callbacks(args: argparse.Namespace, epochs: int) -> tuple[Callable[[dict], None], Callable[[], None]]:
    reporters: list[Callable[[dict], None]] = []
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, file=sys.stderr, desc="training", unit="epoch", dynamic_ncols=True)

        def to_bar(event: dict) -> None:
            bar.update(event["epoch"] - bar.n)
            bar.set_postfix(val=f"{event['val_loss']:.4g}", best=f"{event['best_val_loss']:.4g}", refresh=False)

        reporters.append(to_bar)
    if args.run_id:
        try:
            from .run_store import progress_reporter
        except ImportError:
            progress_reporter = None
        if progress_reporter is not None:
            reporters.append(progress_reporter(args.run_id))

    def report(event: dict) -> None:
        for reporter in reporters:
            reporter(event)

    def close() -> None:
        if bar is not None:
            bar.close()

    return report, close


def _stop_on_sigterm(signum, frame) -> None:
    # SystemExit unwinds through the staging context manager, which removes the partial folder
    raise SystemExit(128 + signum)


def train_command(args: argparse.Namespace, fit=None) -> int:
    """`fit`: the training function (default train.fit); the DDP launcher passes one bound to its
    process group."""
    from .datasets import load_tables
    from .preprocessing import Preprocessor
    from .run_writer import write_run
    from .train import split_rows

    if fit is None:
        from .train import fit

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"--out {out} already exists; choose a new folder or delete it")
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        probe_names = [_modality_name(item) for item in args.data]
        spec = build_spec(args, probe_names)
        join = "mask" if spec.train.missing == "mask" else "complete"
        latents = {m.name: m.latents for m in spec.modalities}
        tables = load_tables(args.data, args.id_column or spec.id_column, join=join, latents=latents)
        ids = tables.subject_ids(join)
        split_seed = spec.train.seed if spec.train.split_seed is None else spec.train.split_seed
        train_rows, _ = split_rows(len(ids), spec.train.val_fraction, split_seed)
        preprocessor = Preprocessor.fit(tables.tables, ids[train_rows], join=join, id_column=tables.id_column)
        ids_after, arrays = preprocessor.transform(tables.tables)
        if list(map(str, ids_after)) != list(map(str, ids)):
            raise RuntimeError("preprocessing changed the subject order")
        features = preprocessor.feature_names
        sources = [
            DataSource(modality=s.modality, path=str(Path(s.path).resolve()), sha256=s.sha256, sheet=s.sheet)
            for s in tables.sources
        ]
        spec = spec.model_copy(update={
            "modalities": [m.model_copy(update={"columns": features[m.name]}) for m in spec.modalities],
            "sources": sources,
            "id_column": tables.id_column,
        })
        for m in spec.modalities:
            if len(features[m.name]) < m.latents:
                raise UserInputError(f"modality {m.name!r} has {len(features[m.name])} usable columns but "
                                     f"{m.latents} latents were asked for; use at most as many latents as columns")
        report, close = _progress_callbacks(args, spec.train.epochs)
        try:
            result = fit(arrays, spec, progress=report, ids=np.asarray(ids))
        finally:
            close()
        write_run(out, spec, result, ids, tables.id_column, preprocessor.to_dict(), dict(tables.sha256),
                  overwrite=out.exists())
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps({"run_dir": str(out), "best_val_loss": result.best_val_loss, "epochs": len(result.history),
                      "device": result.device, "seconds": round(result.seconds, 1)}))
    return 0


def _modality_name(item: str) -> str:
    from .datasets import parse_source

    try:
        return parse_source(item).modality
    except ValueError as exc:
        raise UserInputError(f"{item}: not a data source ({exc}); give NAME=PATH or PATH") from None
