"""The query expressions of ``quanta query``, parsed safely: Python's ``ast`` reads the text,
and only the forms below become calls of the typed query API (``quanta/_query``); nothing
is evaluated (no ``eval``, no names looked up, no attribute reached but the ones listed).

```
age >= 30                      a field compared with a literal (==, !=, <, <=, >, >=)
30 <= age < 40                 a chain: each step is one comparison, joined by and
city == 'Oslo' and age > 30    and / or / not        ->  &  |  ~
city in ['Oslo', 'Rome']       in_(City, [...]); "not in" is its negation
nick is None, nick is not None is_none() / is_not_none()
name.startswith('A')           the field's startswith
between(age, 30, 39)           between, in_, contains (the quanta functions of the same names)
User.age > 3                   a field may be written with its entity's name in front
```
Literals are what ``ast.literal_eval`` accepts (numbers, strings, bytes, True/False/None,
tuples, lists, sets): a literal node is handed to it alone, never a name or a call. Anything
else raises :class:`quanta.QueryError` naming the column, before the database is read;
a type the field does not take is refused by the query API itself, with its own message.

Order keys (``--order-by``): ``age``, ``-age`` or ``age desc`` (descending), ``age asc``.
"""

from __future__ import annotations

import ast
from typing import Any

from .._query import asc, between, contains, desc, in_
from ..errors import QueryError

__all__ = ["parse_expression", "parse_order"]

_COMPARE: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_FUNCTIONS = ("between", "in_", "contains")


class _Parser:
    def __init__(self, cls: type, entity: str, fields: list[str], text: str) -> None:
        self.cls = cls
        self.entity = entity
        self.fields = fields
        self.text = text

    def error(self, node: ast.AST | None, message: str) -> QueryError:
        where = f" at column {node.col_offset + 1}" if node is not None and hasattr(node, "col_offset") else ""
        return QueryError(f"bad expression {self.text!r}{where}: {message}")

    # ------------------------------------------------------------------ leaves

    def field(self, node: ast.expr) -> Any | None:
        """The query Field ``node`` names, None if it is not a field reference."""
        name: str | None = None
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self.entity:
            name = node.attr
        if name is None:
            return None
        if name not in self.fields:
            raise self.error(node, f"{self.entity} has no field {name!r} (fields: {', '.join(self.fields)})")
        return getattr(self.cls, name)

    def literal(self, node: ast.expr) -> Any:
        if isinstance(node, (ast.Name, ast.Attribute)) and self.field(node) is not None:
            raise self.error(node, "compare a field with a literal value, not with another field")
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise self.error(node, f"{ast.unparse(node)!r} is not a literal value") from None

    # ------------------------------------------------------------------ nodes

    def expr(self, node: ast.expr) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [self.expr(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.expr(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.Name, ast.Attribute)) and self.field(node) is not None:
            raise self.error(node, "a field alone is not a condition: compare it (== True for a bool field)")
        raise self.error(node, f"{ast.unparse(node)!r} is not a condition")

    def compare(self, node: ast.Compare) -> Any:
        terms = [node.left, *node.comparators]
        conditions = [self.one(terms[i], op, terms[i + 1]) for i, op in enumerate(node.ops)]
        out = conditions[0]
        for c in conditions[1:]:
            out = out & c
        return out

    def one(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Any:
        if isinstance(op, (ast.Is, ast.IsNot)):
            f = self.field(left)
            if f is None or not (isinstance(right, ast.Constant) and right.value is None):
                raise self.error(left, "'is' and 'is not' take a field and None: nick is None")
            return f.is_none() if isinstance(op, ast.Is) else f.is_not_none()
        if isinstance(op, (ast.In, ast.NotIn)):
            f = self.field(left)
            if f is None:
                raise self.error(left, "'in' takes a field on its left: city in ['Oslo', 'Rome']")
            values = self.literal(right)
            if not isinstance(values, (list, tuple, set, frozenset)):
                raise self.error(right, "'in' takes a list, tuple or set of values on its right")
            cond = in_(f, values)
            return cond if isinstance(op, ast.In) else ~cond
        symbol = _COMPARE.get(type(op))
        if symbol is None:
            raise self.error(left, f"unsupported comparison {type(op).__name__}")
        lf, rf = self.field(left), self.field(right)
        if lf is not None and rf is not None:
            raise self.error(left, "compare a field with a literal value, not with another field")
        if lf is None and rf is None:
            raise self.error(left, f"{ast.unparse(left)} {symbol} {ast.unparse(right)} names no field")
        if lf is None:  # 30 <= age: the same as age >= 30
            return _apply(rf, _FLIP[symbol], self.literal(left))
        return _apply(lf, symbol, self.literal(right))

    def call(self, node: ast.Call) -> Any:
        if node.keywords:
            raise self.error(node, "keyword arguments are not part of the expression language")
        func = node.func
        if isinstance(func, ast.Attribute):
            f = self.field(func.value)
            if f is None:
                raise self.error(node, f"{ast.unparse(func)}() is not a field method")
            if func.attr == "startswith" and len(node.args) == 1:
                return f.startswith(self.literal(node.args[0]))
            if func.attr in ("is_none", "is_not_none") and not node.args:
                return getattr(f, func.attr)()
            raise self.error(node, f"fields have startswith(prefix), is_none() and is_not_none(), not {func.attr}")
        if isinstance(func, ast.Name) and func.id in _FUNCTIONS:
            if not node.args:
                raise self.error(node, f"{func.id} takes a field first")
            f = self.field(node.args[0])
            if f is None:
                raise self.error(node.args[0], f"{func.id} takes a field first")
            args = [self.literal(a) for a in node.args[1:]]
            if func.id == "between" and len(args) == 2:
                return between(f, args[0], args[1])
            if func.id == "in_" and len(args) == 1:
                return in_(f, args[0])
            if func.id == "contains" and len(args) == 1:
                return contains(f, args[0])
            raise self.error(node, f"wrong number of arguments for {func.id}")
        raise self.error(node, f"unknown function {ast.unparse(func)} (known: {', '.join(_FUNCTIONS)})")


def _apply(field: Any, symbol: str, value: Any) -> Any:
    if symbol == "==":
        return field == value
    if symbol == "!=":
        return field != value
    if symbol == "<":
        return field < value
    if symbol == "<=":
        return field <= value
    if symbol == ">":
        return field > value
    return field >= value


def parse_expression(text: str, cls: type, entity: str, fields: list[str]) -> Any:
    """The query condition ``text`` means for entity class ``cls`` (named ``entity``, with
    ``fields``); raises :class:`quanta.QueryError` for anything outside the language."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise QueryError(f"bad expression {text!r}: {exc.msg} at column {exc.offset or 0}") from None
    return _Parser(cls, entity, fields, text).expr(tree.body)


def parse_order(key: str, cls: type, entity: str, fields: list[str]) -> Any:
    """An ``--order-by`` key (``age``, ``-age``, ``age desc``, ``age asc``) as an order of
    the query API."""
    text = key.strip()
    descending = False
    if text.startswith("-"):
        text, descending = text[1:].strip(), True
    else:
        words = text.split()
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            text, descending = words[0], words[1].lower() == "desc"
    if text not in fields:
        raise QueryError(f"--order-by {key!r}: {entity} has no field {text!r} (fields: {', '.join(fields)})")
    f = getattr(cls, text)
    return desc(f) if descending else asc(f)
