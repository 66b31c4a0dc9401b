"""Requirements in an export: vastnb's documented units -> the official ``Column``'s raw units.

``image.require(gpu_ram >= 16)`` means 16 GB in vastnb (as Vast's docs say), but the
official ``Column`` stores the number as given and compares MB; so the export writes
``gpu_ram >= 16_000``. Columns imported from ``vastai.data.query`` in the notebook mean
the same as vastnb's there (``image.require`` converts them with the documented units),
so they are scaled the same way.
"""

from __future__ import annotations

import ast

from ._model import Aliases

__all__ = ["QueryRewriter", "unit_note"]

OFFICIAL_QUERY = "vastai.data.query"

_UNITS = {"gpu_ram": ("GB", "MB"), "cpu_ram": ("GB", "MB"), "gpu_total_ram": ("GB", "MB"),
          "duration": ("days", "seconds")}


class QueryRewriter(ast.NodeTransformer):
    """``gpu_ram >= 16`` (GB, vastnb) -> ``gpu_ram >= 16_000`` (MB, official); ``vastnb.query.X`` -> ``X``."""

    def __init__(self, aliases: Aliases, factors: dict[str, float]) -> None:
        self.aliases = aliases
        self.factors = factors
        self.changed = False
        self.columns: list[str] = []
        self.imported: dict[str, str] = {}

    def column(self, node: ast.expr) -> str | None:
        """The column ``node`` names: one of vastnb.query's, or of ``vastai.data.query`` (imported as the notebook
        imported it: ``gpu_ram``, ``vq.gpu_ram``, ``vastai.data.query.gpu_ram``)."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases.query_names:
                return self.aliases.query_names[node.id]
            if node.id in self.imported:
                return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in self.aliases.query_modules:
            return node.attr
        if isinstance(node, (ast.Name, ast.Attribute)):
            origin = self.aliases.origin(node) or ""
            module, _, name = origin.rpartition(".")
            if module == OFFICIAL_QUERY and name:
                return name
        return None

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        value = node.value
        if (
            isinstance(value, ast.Attribute) and value.attr == "query" and isinstance(value.value, ast.Name)
            and value.value.id in self.aliases.vastnb_modules
        ):
            self.imported[node.attr] = node.attr
            self.changed = True
            return ast.Name(id=node.attr, ctx=ast.Load())
        self.generic_visit(node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        for i, operand in enumerate(operands):
            column = self.column(operand)
            factor = self.factors.get(column or "")
            if not factor:
                continue
            for j in (i - 1, i + 1):
                if 0 <= j < len(operands) and self.column(operands[j]) is None:
                    operands[j] = self.scale(operands[j], factor)
                    self.changed = True
                    if column not in self.columns:
                        self.columns.append(column or "")
        node.left, node.comparators = operands[0], operands[1:]
        return node

    @staticmethod
    def scale(expr: ast.expr, factor: float) -> ast.expr:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool):
            value = expr.value * factor
            if float(value).is_integer():
                return ast.Name(id=f"{int(value):_}", ctx=ast.Load())  # unparsed as written: 16_000
            return ast.Constant(round(value, 6))
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub) and isinstance(expr.operand, ast.Constant):
            inner = QueryRewriter.scale(expr.operand, factor)
            return ast.UnaryOp(op=ast.USub(), operand=inner)
        factor_node = ast.Constant(int(factor) if float(factor).is_integer() else factor)
        return ast.BinOp(left=expr, op=ast.Mult(), right=factor_node)


def unit_note(columns: list[str]) -> str:
    """``MB: vastnb.query takes gpu_ram, cpu_ram in GB, the official Column compares MB``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for column in dict.fromkeys(columns):
        groups.setdefault(_UNITS.get(column, ("its documented unit", "Vast's raw unit")), []).append(column)
    return "; ".join(f"{raw}: vastnb.query takes {', '.join(cols)} in {documented}, the official Column "
                     f"compares {raw}" for (documented, raw), cols in groups.items())
