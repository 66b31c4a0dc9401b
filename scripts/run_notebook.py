"""Execute a notebook in a real kernel and print each cell with its outputs (the quickstart's runner)."""

from __future__ import annotations

import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return data.get("text/plain", "") + ("\n" if data.get("text/plain") else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--output", help="where to save the executed notebook")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    t0 = time.time()
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(args.notebook))}})
    try:
        client.execute()
    finally:
        if args.output:
            os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
            nbformat.write(nb, args.output)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        print(f"\033[1mIn [{cell.get('execution_count') or ' '}]:\033[0m " + cell.source.replace("\n", "\n         "))
        for out in cell.get("outputs", []):
            text = _text(out).rstrip()
            if text:
                print("   " + text.replace("\n", "\n   "))
        print()
    print(f"{args.notebook}: executed end to end in {time.time() - t0:.1f} s"
          + (f"; saved to {args.output}" if args.output else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
