"""Argument parsing shared by the magics: ``--help`` everywhere, usage shown with every mistake."""

from __future__ import annotations

from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument

from .grammar import python_without_comment, split_line, without_comment

__all__ = ["context_arguments", "evaluate_option", "help_argument", "parse", "python_names", "wants_help"]

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
        tokens = split_line(line)
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


def context_arguments(ns: dict[str, Any], line: str) -> tuple[tuple, dict]:
    text = python_without_comment(line).strip()
    if not text:
        return (), {}
    try:
        code = compile(f"__vastnb_arguments__({text})", "<%%vast_context arguments>", "eval")
    except SyntaxError as exc:
        raise UsageError(
            f"%%vast_context: cannot read the arguments `{text}` ({exc.msg}). Write them as @app.context(...) "
            'takes them, e.g. %%vast_context "weights.pt", dtype="bf16".'
        ) from None
    helper = {"__vastnb_arguments__": lambda *a, **k: (a, k)}
    try:
        args, kwargs = eval(code, ns, helper)
    except Exception as exc:  # noqa: BLE001 - any error in the user's expressions
        raise UsageError(f"%%vast_context: evaluating the arguments `{text}` failed: {type(exc).__name__}: {exc}") from None
    return args, kwargs


def evaluate_option(ns: dict[str, Any], option: str, expression: str | None) -> Any:
    if expression is None:
        return None
    try:
        return eval(expression, ns)
    except NameError as exc:
        raise UsageError(
            f"%%vast_remote {option}: {exc}; define it in this cell or an earlier one."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any error in the user's expression
        raise UsageError(f"%%vast_remote {option}: cannot evaluate {expression!r}: {type(exc).__name__}: {exc}") from None
