"""`python -m mmcrl_core COMMAND ...`: the command-line contract of DESIGN.md.

Each command lives beside the code it drives: a module exposes `add_cli(subparsers)`, which adds
its parser and sets `handler` (a function of the parsed args returning an exit code or None).
Modules are imported lazily, so `--help` and light commands do not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserInputError

# command -> module that registers it
COMMAND_MODULES = {
    "simulate": "mmcrl_core.simulate",
    "validate": "mmcrl_core.datasets",
    "train": "mmcrl_core.train_cli",
    "encode": "mmcrl_core.infer",
    "associate": "mmcrl_core.analysis",
    "export": "mmcrl_core.graph",
    "benchmark": "mmcrl_core.benchmark",
    "sweep": "mmcrl_core.sweeps",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmcrl_core",
        description="Causal representation learning from multimodal biomedical observations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, module_name in COMMAND_MODULES.items():
        if only is not None and command != only:
            subparsers.add_parser(command, help=f"see `python -m mmcrl_core {command} --help`")
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not built yet
        module.add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMAND_MODULES else None)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
