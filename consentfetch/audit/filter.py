"""The small expression language of ``consentfetch audit --filter``.

``column == "value"``, ``!=``, ``column in ("a", "b")``, ``not in``, ``and``,
``or``, ``not``, parentheses; values are quoted strings, numbers or ``null``.
A recursive-descent parser (:func:`parse_filter`) builds a typed tree
(:class:`Compare`, :class:`Member`, :class:`And`, :class:`Or`, :class:`Not`)
that :func:`select_rows` compiles to pyarrow expressions; nothing is ever
``eval``-ed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FilterError
from .hosts import host_column, norm_host

__all__ = ["And", "Compare", "FilterError", "Member", "Node", "Not", "Or", "Value",
           "parse_filter", "select_rows"]

#: A literal of the language: a quoted string, a number, or null.
Value = str | int | float | None


@dataclass(frozen=True, slots=True)
class Compare:
    """``column == value`` or ``column != value``."""

    column: str
    op: Literal["==", "!="]
    value: Value


@dataclass(frozen=True, slots=True)
class Member:
    """``column in (values)``, or ``not in`` when ``negated``."""

    column: str
    negated: bool
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


Node = Compare | Member | And | Or | Not


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "string", "number", "op", "(", ")", ",", "end"
    text: str
    value: Any
    pos: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "null", "none"}
_MAX_FILTER = 4096


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        kind = m.lastgroup or ""
        chunk = m.group()
        if kind == "string":
            out.append(_Token("string", chunk, _unquote(chunk[1:-1]), pos))
        elif kind == "number":
            out.append(_Token("number", chunk, float(chunk) if "." in chunk else int(chunk),
                              pos))
        elif kind == "op":
            out.append(_Token("op", chunk, chunk, pos))
        elif kind == "punct":
            out.append(_Token(chunk, chunk, chunk, pos))
        elif kind == "name":
            lowered = chunk.lower()
            out.append(_Token(lowered if lowered in _KEYWORDS else "name", chunk, chunk, pos))
        pos = m.end()
    out.append(_Token("end", "", None, len(text)))
    return out


def _unquote(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Parser:
    """Recursive descent over::

        expr  := term ("or" term)*
        term  := factor ("and" factor)*
        factor:= "not" factor | "(" expr ")" | NAME ("=="|"!=") VALUE
               | NAME ["not"] "in" "(" VALUE ("," VALUE)* [","] ")"
        VALUE := "string" | 'string' | number | null
    """

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self, kind: str | None = None, what: str = "") -> _Token:
        token = self.tokens[self.i]
        if kind is not None and token.kind != kind:
            found = "the end" if token.kind == "end" else repr(token.text)
            raise FilterError(f"expected {what or kind} at position {token.pos + 1}, "
                              f"found {found}")
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.expr()
        self.take("end", "'and', 'or' or the end")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek().kind == "or":
            self.take()
            node = Or(node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek().kind == "and":
            self.take()
            node = And(node, self.factor())
        return node

    def factor(self) -> Node:
        self.depth += 1
        if self.depth > 100:
            raise FilterError("expression nested too deeply")
        try:
            token = self.peek()
            if token.kind == "not":
                self.take()
                return Not(self.factor())
            if token.kind == "(":
                self.take()
                node = self.expr()
                self.take(")", "')'")
                return node
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> Node:
        column = self.take("name", "a column name").text
        token = self.peek()
        if token.kind == "op":
            self.take()
            return Compare(column, "==" if token.value == "==" else "!=", self.value())
        negated = False
        if token.kind == "not":
            self.take()
            negated = True
        self.take("in", "'==', '!=' or 'in'")
        self.take("(", "'(' after 'in'")
        values = [self.value()]
        while self.peek().kind == ",":
            self.take()
            if self.peek().kind == ")":
                break
            values.append(self.value())
        self.take(")", "')'")
        return Member(column, negated, tuple(values))

    def value(self) -> Value:
        token = self.take()
        if token.kind in ("string", "number"):
            value: Value = token.value
            return value
        if token.kind in ("null", "none"):
            return None
        found = "the end" if token.kind == "end" else repr(token.text)
        raise FilterError(f"expected a quoted value or a number at position {token.pos + 1}, "
                          f"found {found}")


def parse_filter(text: str) -> Node:
    """Parse a ``--filter`` expression into a typed tree (raises :class:`FilterError`).

    The language: ``column == "value"``, ``!=``, ``column in ("a", "b")``,
    ``not in``, ``and``, ``or``, ``not``, parentheses; values are quoted
    strings, numbers or ``null``. ``host`` is the URL's hostname. Nothing is
    ever evaluated as Python::

        >>> parse_filter('reason == "x" or host in ("a", "b")')
        Or(left=Compare(column='reason', op='==', value='x'),
           right=Member(column='host', negated=False, values=('a', 'b')))
    """
    if len(text) > _MAX_FILTER:
        raise FilterError(f"expression longer than {_MAX_FILTER} characters")
    if not text.strip():
        raise FilterError("empty expression")
    return _Parser(text).parse()


def columns_of(node: Node) -> set[str]:
    """Every column name ``node`` mentions."""
    if isinstance(node, (Compare, Member)):
        return {node.column}
    if isinstance(node, Not):
        return columns_of(node.operand)
    return columns_of(node.left) | columns_of(node.right)


_HOST_FIELD = "__consentfetch_host__"


def select_rows(table: pa.Table, expression: str | None = None, *,
                status: Iterable[str] = (), reason: Iterable[str] = (),
                host: Iterable[str] = ()) -> pa.Table:
    """The rows of an audit ``table`` that match all of the given conditions.

    ``status``, ``reason`` and ``host`` each keep rows equal to any of their
    values (host: the URL's hostname, case-insensitive). ``expression`` is a
    ``--filter`` expression (:func:`parse_filter`); raises :class:`FilterError`
    if it is malformed or names a column the table does not have::

        >>> select_rows(audit, 'reason in ("x_robots_tag", "tdm_reserved") and '
        ...                    'host != "example.com"')
        >>> select_rows(audit, 'evidence_file == "https://example.com/robots.txt" '
        ...                    'and evidence_line == 4')
        >>> select_rows(audit, status=["failed_to_download"], host=["Example.com"])
    """
    condition = _condition(expression, status, reason, host)
    if condition is None or table.num_rows == 0:
        return table
    known = set(table.column_names)
    unknown = sorted(columns_of(condition) - known - {"host"})
    if unknown:
        raise FilterError(f"unknown column {', '.join(unknown)}; columns are: "
                          f"{', '.join(sorted(known | {'host'}))}")
    work = table
    if "host" in columns_of(condition) and "host" not in known:
        work = table.append_column(_HOST_FIELD, host_column(table))
    result = work.filter(_compile(condition, work.schema))
    return result.drop_columns([_HOST_FIELD]) if _HOST_FIELD in result.column_names else result


def _condition(expression: str | None, status: Iterable[str], reason: Iterable[str],
               host: Iterable[str]) -> Node | None:
    """The expression and the flag conditions, joined with ``and``."""
    condition = parse_filter(expression) if expression is not None else None
    for column, values in (("status", list(status)), ("reason", list(reason)),
                           ("host", [norm_host(h) for h in host])):
        if values:
            node = Member(column, False, tuple(values))
            condition = node if condition is None else And(condition, node)
    return condition


def _compile(node: Node, schema: pa.Schema) -> pc.Expression:
    if isinstance(node, And):
        return _compile(node.left, schema) & _compile(node.right, schema)
    if isinstance(node, Or):
        return _compile(node.left, schema) | _compile(node.right, schema)
    if isinstance(node, Not):
        return ~_compile(node.operand, schema)
    name = _HOST_FIELD if node.column == "host" and "host" not in schema.names else node.column
    field, ftype = pc.field(name), schema.field(name).type
    if isinstance(node, Compare):
        return _compare(node, field, ftype)
    return _member(node, field, ftype)


def _compare(node: Compare, field: pc.Expression, ftype: pa.DataType) -> pc.Expression:
    if node.value is None:
        return field.is_null() if node.op == "==" else field.is_valid()
    target = field.cast(pa.string()) if isinstance(node.value, str) and \
        _is_other(ftype) else field
    equal = target == _literal(node.column, node.value, ftype)
    # Comparisons are never null: a null cell is unequal to every value.
    return (equal & field.is_valid()) if node.op == "==" else (~equal | field.is_null())


def _member(node: Member, field: pc.Expression, ftype: pa.DataType) -> pc.Expression:
    present = [v for v in node.values if v is not None]
    strings = any(isinstance(v, str) for v in present) and _is_other(ftype)
    target = field.cast(pa.string()) if strings else field
    literals = [str(v) if strings else _literal(node.column, v, ftype) for v in present]
    member = target.isin(literals) if literals else pc.scalar(False)
    member = (member & field.is_valid()) | (field.is_null() if None in node.values
                                             else pc.scalar(False))
    return ~member if node.negated else member


def _is_other(ftype: pa.DataType) -> bool:
    """Neither text nor a number: compared as text (timestamps, booleans, ...)."""
    return not (pa.types.is_string(ftype) or pa.types.is_large_string(ftype)
                or pa.types.is_integer(ftype) or pa.types.is_floating(ftype))


def _literal(column: str, value: Any, ftype: pa.DataType) -> Any:
    if pa.types.is_string(ftype) or pa.types.is_large_string(ftype):
        return str(value)
    if pa.types.is_integer(ftype) or pa.types.is_floating(ftype):
        if isinstance(value, str):
            try:
                return float(value) if "." in value else int(value)
            except ValueError:
                raise FilterError(f"{column} holds numbers, not {value!r}") from None
        return value
    return str(value)

