"""The magics' argument grammar, written once: the magics parse their lines with it, and so does the export.

Each option of ``%vast_deployment`` and ``%%vast_remote`` is declared here as an
:class:`Option` (argparse's own words). :func:`magic_arguments_for` turns a list of
them into IPython's ``magic_arguments`` decorators (so ``%vast_remote?`` and
``--help`` document them), and :func:`read_line` reads a magic line the same way
for the export, keeping each given value as the source text it was written as.
Lines are split with IPython's ``arg_split``, after dropping a trailing ``# comment``.
"""

from __future__ import annotations

import argparse
import io
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ..backends import BACKENDS
from ..spec import DEFAULT_BENCHMARK_RUNS, DEFAULT_MAX_QUEUE_TIME, DEFAULT_RETRIES, DEFAULT_TIMEOUT

__all__ = [
    "DEPLOYMENT_OPTIONS",
    "REMOTE_OPTIONS",
    "Option",
    "magic_arguments_for",
    "python_without_comment",
    "read_line",
    "split_line",
    "without_comment",
]


@dataclass(frozen=True)
class Option:
    """One argument of a magic, as ``argparse.add_argument(*flags, **spec)`` takes it; ``group`` names its help group."""

    flags: tuple[str, ...]
    spec: dict[str, Any] = field(default_factory=dict)
    group: tuple[str, str] | None = None  # (title, description)

    @property
    def dest(self) -> str:
        flag = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return flag.lstrip("-").replace("-", "_")


_BENCHMARK = ("benchmark", "Apply to the first async def in the cell (the function workers are scored with).")
_CALLS = ("calls", "Apply to every async def in the cell.")

#: ``%%vast_remote`` (the options of ``@app.remote``, with the official SDK's defaults).
REMOTE_OPTIONS: tuple[Option, ...] = (
    Option(("--benchmark-dataset",), dict(
        metavar="EXPR", help="benchmark inputs: a list of dicts of arguments, a Python expression evaluated in the "
                             "notebook, e.g. '[{\"x\": 2}]'"), _BENCHMARK),
    Option(("--benchmark-generator",), dict(
        metavar="NAME", help="a function returning one dict of arguments per call"), _BENCHMARK),
    Option(("--benchmark-runs",), dict(
        metavar="N", type=int, default=DEFAULT_BENCHMARK_RUNS,
        help=f"timed benchmark runs (default: {DEFAULT_BENCHMARK_RUNS})"), _BENCHMARK),
    Option(("--workload-calculator",), dict(
        metavar="NAME", help="a function of the call's arguments returning its workload (default: 100 per request)"),
        _BENCHMARK),
    Option(("--allow-parallel-requests",), dict(
        action="store_true", help="let a worker run several calls at once"), _CALLS),
    Option(("--max-queue-time",), dict(
        metavar="S", type=float, default=DEFAULT_MAX_QUEUE_TIME,
        help=f"fail a call that would wait longer than S seconds for a worker (default: {DEFAULT_MAX_QUEUE_TIME:g})"),
        _CALLS),
    Option(("--retries",), dict(
        metavar="N", type=int, default=DEFAULT_RETRIES,
        help=f"re-run a call this many times when its worker dies (default: {DEFAULT_RETRIES}; 0 for non-idempotent "
             "code)"), _CALLS),
    Option(("--timeout",), dict(
        metavar="S", type=float, default=DEFAULT_TIMEOUT, help=f"fail a call after S seconds (default: {DEFAULT_TIMEOUT:g})"),
        _CALLS),
)

#: ``%vast_deployment``.
DEPLOYMENT_OPTIONS: tuple[Option, ...] = (
    Option(("name",), dict(
        nargs="?", help="the deployment's name; running it again with the same name selects the existing one")),
    Option(("--backend",), dict(
        choices=BACKENDS, default=None,
        help="where workers run: processes on this machine (local, the default) or Vast Serverless (vast)")),
    Option(("--tag",), dict(default=None, help="the deployment's tag (default: default)")),
    Option(("--var",), dict(default=None, metavar="NAME", help="the notebook variable to bind it to (default: app)")),
)


def magic_arguments_for(options: Sequence[Option]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """IPython ``@argument``/``@argument_group`` decorators for ``options``, applied as if written above the magic."""
    from IPython.core.magic_arguments import argument, argument_group

    decorators: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = []
    group = None
    for option in options:
        if option.group is not None and option.group != group:
            group = option.group
            decorators.append(argument_group(*group))
        decorators.append(argument(*option.flags, **option.spec))

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def split_line(line: str) -> list[str]:
    """A magic's argument line as words, as the magics read it (IPython's ``arg_split``, shell quoting)."""
    from IPython.utils.process import arg_split

    return list(arg_split(without_comment(line), posix=True))


def read_line(options: Sequence[Option], line: str) -> tuple[dict[str, Any], list[str]]:
    """``({dest: value as written}, [words no option takes])`` for the options *given* on ``line``.

    Values stay source text (the export writes them back as code); flags are True. Raises ``ValueError`` for
    a line that cannot be split or an option without its value."""
    parser = _Parser(add_help=False, prog="magic")
    for option in options:
        spec = {k: v for k, v in option.spec.items() if k not in ("type", "default", "choices")}
        parser.add_argument(*option.flags, default=argparse.SUPPRESS, **spec)
    given, unknown = parser.parse_known_args(split_line(line))
    return vars(given), unknown


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the process
        raise ValueError(message)


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a word outside quotes, as a shell reads a comment.

    IPython hands a line magic everything after its name, a trailing ``# comment`` included.
    """
    quote = ""
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def python_without_comment(text: str) -> str:
    """A line of Python arguments without its trailing ``# comment`` (``%%vast_context "w.pt"  # the weights``)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                return text[:tok.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):
        pass  # not Python: the caller reports it in its own words
    return text
