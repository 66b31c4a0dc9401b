"""Reading the argument line of a magic: where a trailing ``# comment`` starts (used by the magics and the export)."""

from __future__ import annotations

import io
import tokenize

__all__ = ["python_without_comment", "without_comment"]


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
