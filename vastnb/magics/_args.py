"""Argument parsing shared by the magics: ``--help`` everywhere, usage shown with every mistake."""

from __future__ import annotations

from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument
from IPython.utils.process import arg_split

from .._magic_lines import without_comment

__all__ = ["help_argument", "parse", "python_names", "wants_help"]

# Shared argument: every magic answers --help (IPython's parsers leave it out).
help_argument = argument("-h", "--help", action="store_true", help="show this help and do nothing else")


def _usage(parser: Any) -> str:
    """The parser's usage, as argparse writes it (IPython's formatter turns ``usage:`` into a reST ``::``)."""
    return _unrest(parser.format_usage()).rstrip()


def _help_text(parser: Any) -> str:
    return _unrest(parser.format_help()).rstrip()


def _unrest(text: str) -> str:
    head, sep, rest = text.lstrip("\n").partition("\n\n")
    if head.strip() != "::":
        return text
    usage, sep, body = ("usage: " + rest.lstrip(" ")).partition("\n\n")
    first, *more = usage.split("\n")
    indent = " " * (first.find(" ", len("usage: ")) + 1)
    return "\n".join([first, *(indent + ln.strip() for ln in more)]) + sep + body


def parse(magic: Callable[..., Any], name: str, line: str) -> Any:
    """Parse a magic's argument line; ``None`` after showing ``--help``. Mistakes are ``UsageError`` with the usage."""
    parser = magic.parser  # type: ignore[attr-defined]
    try:
        tokens = arg_split(without_comment(line), posix=True)
    except ValueError as exc:
        raise UsageError(f"{name}: cannot read the arguments {line.strip()!r} ({exc}).\n{_usage(parser)}") from None
    if "-h" in tokens or "--help" in tokens:
        print(_help_text(parser))
        return None
    try:
        return parser.parse_args(tokens)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}\n{_usage(parser)}") from None


def python_names(option: str, values: list[str] | None) -> list[str]:
    """``a,b`` (optionally repeated) as a list of Python names."""
    out: list[str] = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if not name.isidentifier():
                raise UsageError(f"%%vast_run {option}: {name!r} is not a Python variable name.")
            if name not in out:
                out.append(name)
    return out


def wants_help(line: str) -> bool:
    return without_comment(line).strip() in ("-h", "--help")
