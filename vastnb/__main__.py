"""The ``vastnb`` command line.

::

    python -m vastnb export NOTEBOOK.ipynb -o deploy.py [--client client.py] [--check]

Exit status: 0 on success, 1 when ``--check`` finds values the official JSON wire
cannot carry, 2 on usage errors (no such notebook, not a notebook, no deployment in it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vastnb", description="Vast.ai Deployments from Jupyter notebooks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    export = commands.add_parser(
        "export", help="write a notebook as a deployment file for the official vastai SDK",
        description="Write NOTEBOOK as one deployment module that the official vastai SDK deploys and serves "
                    "unchanged: its deployment, image, autoscaling, contexts and remote functions, and only the "
                    "notebook code they need. Cells tagged vast-export are always included, cells tagged "
                    "vast-skip never.")
    export.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb file")
    export.add_argument("-o", "--output", metavar="OUT", help="the deployment module to write, e.g. deploy.py")
    export.add_argument("--client", metavar="CLIENT",
                        help="also write a client script that imports OUT and calls each remote function")
    export.add_argument("--check", action="store_true",
                        help="only report what the official JSON wire cannot carry (bools, sets, arrays, tensors, "
                             "exception messages); write nothing, exit 1 if anything is found")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the ``vastnb`` console script exits with it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        return _export(parser, args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects it first
    return 2  # pragma: no cover


def _export(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .export import ExportError, WireWarning, export_notebook

    if not args.check and not args.output:
        print("vastnb export: say where to write the deployment module with -o OUT (e.g. -o deploy.py), "
              "or pass --check to only check the notebook.", file=sys.stderr)
        return 2
    try:
        result = export_notebook(args.notebook, client_path=args.client)
    except ExportError as exc:
        print(f"vastnb export: {exc}", file=sys.stderr)
        return 2
    if args.check:
        wire = [w for w in result.warnings if isinstance(w, WireWarning)]
        for w in result.warnings:
            print(("wire: " if isinstance(w, WireWarning) else "note: ") + str(w))
        if wire:
            print(f"vastnb export --check: {len(wire)} thing(s) the official JSON wire cannot carry.", file=sys.stderr)
            return 1
        print("vastnb export --check: nothing found that the official JSON wire cannot carry.")
        return 0
    try:
        written = result.write(args.output, args.client)
    except (OSError, ExportError) as exc:
        print(f"vastnb export: cannot write the export: {exc}", file=sys.stderr)
        return 2
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    functions = ", ".join(f.name for f in result.functions) or "no remote functions"
    print(f"vastnb export: wrote {' and '.join(written)} ({functions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
