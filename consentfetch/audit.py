"""Reading the audit back: every row of every complete shard of an output folder.

Three questions, three functions:

* :func:`read_audit` — the rows themselves, as one pyarrow Table, optionally
  narrowed to a status, a reason code or a host;
* :func:`summarize_audit` — how many URLs ended how: totals by status and by
  reason, grouped rows for a table, and the hosts that opted out or failed most;
* :func:`explain_url` / :func:`explain_host` — every audit row of one URL (or
  one host) in plain words, for the site owner or artist who asks "was my
  opt-out honoured?". :func:`explain_row` builds one such sentence.

:func:`select_rows` filters a table with the small expression language of
``consentfetch audit --filter``, parsed here by a recursive-descent parser
(:func:`parse_filter`) and compiled to pyarrow expressions; nothing is ever
``eval``-ed.

Everything works on a finished run and on one still in progress: only
complete shards (``OutputDir.completed_shards``) are read. Output folders may
be any fsspec URL (``s3://…``, ``memory://…``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .consent.decision import Reason, Status
from .errors import OutputError
from .layout import shard_name
from .safetext import redact_userinfo
from .writer import OutputDir

# The columns a row listing shows, in order (``consentfetch audit --filter``).
ROW_COLUMNS = ("key", "url", "status", "reason", "evidence")
SUMMARY_GROUPS = ("status", "reason", "host")
FAILED = (str(Status.FAILED_TO_DOWNLOAD), str(Status.FAILED_TO_RESIZE))
STATUS_ORDER = (str(Status.SUCCESS), str(Status.DISALLOWED), *FAILED)

# Scheme, optional userinfo, then the host (a bracketed IPv6 literal or up to
# the port, path, query or fragment), like urlsplit().hostname but vectorised.
_HOST_RE = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?(?P<host>\[[^\]]*\]|[^:/?#]*)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


# ---------------------------------------------------------------- reading


def open_output(output_dir: str, storage_options: dict[str, Any] | None = None) -> OutputDir:
    """The output folder, for reading: raises :class:`OutputError` if it does not exist.

    (``OutputDir`` itself creates a missing folder, which is right for writing
    and wrong for a typo in ``consentfetch audit``.)
    """
    fs, root = fsspec.core.url_to_fs(str(output_dir), **(storage_options or {}))
    try:
        found = fs.isdir(root.rstrip("/") or "/")
    except OSError as exc:
        raise OutputError(f"cannot read output folder {output_dir}: {exc}") from exc
    if not found:
        raise OutputError(f"no output folder at {output_dir}")
    return OutputDir(output_dir, storage_options)


def read_audit(output_dir: str, *, status: str | None = None, reason: str | None = None,
               host: str | None = None,
               storage_options: dict[str, Any] | None = None) -> pa.Table:
    """All audit rows of the complete shards in ``output_dir``, as one pyarrow Table.

    Works on a finished run and on one still in progress (only shards that
    are complete are read); ``output_dir`` may be any fsspec URL, with
    ``storage_options`` passed to its filesystem. ``status``, ``reason`` and
    ``host`` (the URL's hostname, case-insensitive) keep only the matching
    rows. A folder without complete shards gives an empty table; a folder
    that does not exist raises :class:`~consentfetch.errors.OutputError`.

    Examples::

        >>> audit = read_audit("out/")                       # every row
        >>> refused = read_audit("out/", status="disallowed")
        >>> refused.group_by("reason").aggregate([("key", "count")])
        >>> read_audit("out/", reason="x_robots_tag", host="Example.COM").column("url")
        >>> read_audit("s3://bucket/run1/", storage_options={"anon": True})
    """
    out = open_output(output_dir, storage_options)
    table = _read_shards(out)
    if table.num_rows == 0:
        return table
    if status is not None:
        table = table.filter(pc.equal(table["status"], status))
    if reason is not None:
        table = table.filter(pc.equal(table["reason"], reason))
    if host is not None:
        table = table.filter(pc.fill_null(pc.equal(host_column(table), _norm_host(host)),
                                          False))
    return table


def read_columns(output_dir: str, columns: Sequence[str],
                 storage_options: dict[str, Any] | None = None) -> pa.Table:
    """Only ``columns`` of the audit rows of every complete shard (those that exist).

    For summaries of large runs: reading three columns instead of all of them
    keeps memory to a fraction.
    """
    return _read_shards(open_output(output_dir, storage_options), columns)


def _read_shards(out: OutputDir, columns: Sequence[str] | None = None) -> pa.Table:
    tables = []
    for shard_id in sorted(out.completed_shards()):
        # ParquetFile, not pq.read_table: see OutputDir.read_table.
        with out.fs.open(out.path(f"{shard_name(shard_id)}.parquet"), "rb") as f:
            parquet = pq.ParquetFile(f)
            wanted = None if columns is None else \
                [c for c in columns if c in parquet.schema_arrow.names]
            tables.append(parquet.read(columns=wanted))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def read_run(output_dir: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``run.json`` of an output folder, or ``{}`` if it has none (yet)."""
    out = open_output(output_dir, storage_options)
    if not out.exists("run.json"):
        return {}
    value = out.read_json("run.json")
    return value if isinstance(value, dict) else {}


def read_origins(output_dir: str,
                 storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of ``origins.parquet`` (one per origin file consulted), or ``[]``.

    The file is written when a run ends (or is interrupted), so a run in
    progress may not have it yet.
    """
    out = open_output(output_dir, storage_options)
    if not out.exists("origins.parquet"):
        return []
    table = out.read_table("origins.parquet")
    return table.drop_columns([c for c in ("body",) if c in table.column_names]).to_pylist()


def completed_shard_count(output_dir: str,
                          storage_options: dict[str, Any] | None = None) -> int:
    """How many shards of ``output_dir`` are complete (their ``_stats.json`` exists)."""
    return len(open_output(output_dir, storage_options).completed_shards())


# ---------------------------------------------------------------- hosts and URLs


def host_column(table: pa.Table) -> pa.Array:
    """The lower-cased hostname of every row's URL (null when it has none).

    Agrees with ``urlsplit(url).hostname``: userinfo and port dropped, IPv6
    brackets removed.
    """
    if table.num_rows == 0 or "url" not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    urls = table["url"].combine_chunks()
    if not pa.types.is_string(urls.type):
        urls = urls.cast(pa.string())
    found = pc.extract_regex(urls, _HOST_RE)
    hosts = pc.utf8_lower(pc.struct_field(found, [0]))
    hosts = pc.utf8_trim(hosts, "[]")
    empty = pc.equal(hosts, "")
    return pc.if_else(pc.or_kleene(pc.invert(found.is_valid()), empty),
                      pa.scalar(None, pa.string()), hosts)


def _norm_host(host: str) -> str:
    return host.strip().lower().strip("[]")


def normalize_url(url: str) -> str:
    """``url`` with scheme and host lower-cased and a default port dropped.

    An empty path becomes ``/``. Path, query and fragment are kept as
    written. A string that does not parse as a URL is returned unchanged::

        >>> normalize_url("HTTPS://Example.COM:443/Art/A.jpg")
        'https://example.com/Art/A.jpg'
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    if not parts.scheme or parts.hostname is None:
        return url
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased by urlsplit
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def hostname(url: str | None) -> str | None:
    """The lower-cased hostname of ``url``, or None."""
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def find_url(table: pa.Table, url: str) -> pa.Table:
    """The rows of ``table`` for ``url``: exact string matches, or else the
    rows whose URL is the same after :func:`normalize_url`."""
    if table.num_rows == 0:
        return table
    url = redact_userinfo(url)  # stored URLs hold ***@ in place of credentials
    exact = table.filter(pc.fill_null(pc.equal(table["url"], url), False))
    if exact.num_rows:
        return exact
    wanted = normalize_url(url)
    host = hostname(wanted)
    if host is None:
        return exact
    same_host = table.filter(pc.fill_null(pc.equal(host_column(table), host), False))
    mask = [u is not None and normalize_url(u) == wanted for u in same_host["url"].to_pylist()]
    return same_host.filter(pa.array(mask, pa.bool_()))


# ---------------------------------------------------------------- summaries


def summarize_audit(output_dir_or_table: str | pa.Table, *, by: str = "reason", top: int = 10,
                    storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Count the audit rows of a run (or of an audit table) by status, reason and host.

    ``by`` chooses the rows of ``groups``, the table that ``consentfetch
    audit --by`` prints: ``"status"``, ``"reason"`` (each reason code with its
    status; successes have reason ``None``) or ``"host"`` (every host with
    its counts, most opt-outs first, then most failures). ``top`` bounds the
    two host rankings in ``top_hosts`` (and ``groups`` when ``by="host"``);
    ``top=0`` keeps every host.
    Everything returned is plain dicts, lists, strings and numbers, ready for
    ``json.dumps``. Shares are fractions of ``total``, rounded to 4 places.

    Example::

        >>> summarize_audit("out/")
        {"total": 38,
         "by_status": {"success": 17, "disallowed": 17, "failed_to_download": 3,
                       "failed_to_resize": 1},
         "by_reason": {"robots_disallowed": 4, "x_robots_tag": 4, ...},
         "by": "reason",
         "groups": [{"status": "success", "reason": None, "count": 17, "share": 0.4474},
                    {"status": "disallowed", "reason": "robots_disallowed", "count": 4,
                     "share": 0.1053}, ...],
         "top_hosts": {
             "opted_out": [{"host": "gallery.example", "urls": 16, "success": 12,
                            "disallowed": 4, "failed": 0,
                            "reasons": {"robots_disallowed": 4}}, ...],
             "failed": [...]}}

    ``by_status`` lists the four statuses in their usual order and omits
    none (zeros included); ``by_reason`` holds only the reason codes that
    occur, most frequent first.
    """
    if by not in SUMMARY_GROUPS:
        raise ValueError(f"by must be one of {', '.join(SUMMARY_GROUPS)}, not {by!r}")
    if isinstance(output_dir_or_table, pa.Table):
        table = output_dir_or_table
    else:
        table = read_columns(output_dir_or_table, ("url", "status", "reason"), storage_options)
    total = table.num_rows
    statuses = _count(table, "status")
    pairs = _count_pairs(table)
    by_status = {s: statuses.pop(s, 0) for s in STATUS_ORDER}
    by_status.update(sorted(statuses.items()))  # a status from a newer version
    reasons: Counter[str] = Counter()
    for (_, reason), n in pairs.items():
        if reason is not None:
            reasons[reason] += n
    hosts = _host_rows(table)
    summary: dict[str, Any] = {
        "total": total,
        "by_status": by_status,
        "by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by": by,
        "groups": [],
        "top_hosts": {
            "opted_out": _ranked(hosts, "disallowed", top),
            "failed": _ranked(hosts, "failed", top),
        },
    }
    if by == "status":
        summary["groups"] = [{"status": s, "count": n, "share": _share(n, total)}
                             for s, n in by_status.items() if n]
    elif by == "reason":
        summary["groups"] = [
            {"status": s, "reason": r, "count": n, "share": _share(n, total)}
            for (s, r), n in sorted(pairs.items(), key=lambda kv: (
                _status_rank(kv[0][0]), -kv[1], kv[0][1] or ""))]
    else:
        ordered = sorted(hosts, key=lambda h: (-h["disallowed"], -h["failed"], -h["urls"],
                                               h["host"] or ""))
        summary["groups"] = ordered[:top] if top else ordered
    return summary


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def _status_rank(status: str | None) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _count(table: pa.Table, column: str) -> Counter[str]:
    if table.num_rows == 0 or column not in table.column_names:
        return Counter()
    counts = pc.value_counts(table[column])
    return Counter({v["values"]: v["counts"] for v in counts.to_pylist()
                    if v["values"] is not None})


def _count_pairs(table: pa.Table) -> Counter[tuple[str, str | None]]:
    if table.num_rows == 0 or "status" not in table.column_names:
        return Counter()
    grouped = table.select(["status", "reason"]).group_by(
        ["status", "reason"], use_threads=False).aggregate([([], "count_all")])
    return Counter({(r["status"], r["reason"]): r["count_all"] for r in grouped.to_pylist()})


def _host_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One dict per host: URLs, successes, opt-outs, failures, reasons."""
    if table.num_rows == 0 or "url" not in table.column_names:
        return []
    small = pa.table({"host": host_column(table), "status": table["status"],
                      "reason": table["reason"]})
    grouped = small.group_by(["host", "status", "reason"], use_threads=False).aggregate(
        [([], "count_all")])
    rows: dict[str | None, dict[str, Any]] = {}
    for g in grouped.to_pylist():
        row = rows.setdefault(g["host"], {"host": g["host"], "urls": 0, "success": 0,
                                          "disallowed": 0, "failed": 0, "reasons": Counter()})
        n = g["count_all"]
        row["urls"] += n
        if g["status"] == Status.SUCCESS:
            row["success"] += n
        elif g["status"] == Status.DISALLOWED:
            row["disallowed"] += n
        elif g["status"] in FAILED:
            row["failed"] += n
        if g["reason"] is not None:
            row["reasons"][g["reason"]] += n
    for row in rows.values():
        row["reasons"] = dict(sorted(row["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return list(rows.values())


def _ranked(hosts: list[dict[str, Any]], field: str, top: int) -> list[dict[str, Any]]:
    ranked = sorted((h for h in hosts if h[field]),
                    key=lambda h: (-h[field], -h["urls"], h["host"] or ""))
    return ranked[:top] if top else ranked


# ---------------------------------------------------------------- the filter language


class FilterError(ValueError):
    """A ``--filter`` expression that does not parse, or names an unknown column."""


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


# AST: ("cmp", column, op, value) | ("in", column, negated, values) | ("and"|"or", a, b)
#      | ("not", a)
Node = tuple[Any, ...]


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
            node = ("or", node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek().kind == "and":
            self.take()
            node = ("and", node, self.factor())
        return node

    def factor(self) -> Node:
        self.depth += 1
        if self.depth > 100:
            raise FilterError("expression nested too deeply")
        try:
            token = self.peek()
            if token.kind == "not":
                self.take()
                return ("not", self.factor())
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
            return ("cmp", column, token.value, self.value())
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
        return ("in", column, negated, values)

    def value(self) -> Any:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value
        if token.kind in ("null", "none"):
            return None
        found = "the end" if token.kind == "end" else repr(token.text)
        raise FilterError(f"expected a quoted value or a number at position {token.pos + 1}, "
                          f"found {found}")


def parse_filter(text: str) -> Node:
    """Parse a ``--filter`` expression into a small tree (raises :class:`FilterError`).

    The language: ``column == "value"``, ``!=``, ``column in ("a", "b")``,
    ``not in``, ``and``, ``or``, ``not``, parentheses; values are quoted
    strings, numbers or ``null``. ``host`` is the URL's hostname. Nothing is
    ever evaluated as Python.
    """
    if len(text) > _MAX_FILTER:
        raise FilterError(f"expression longer than {_MAX_FILTER} characters")
    if not text.strip():
        raise FilterError("empty expression")
    return _Parser(text).parse()


def _columns_of(node: Node) -> set[str]:
    if node[0] in ("cmp", "in"):
        return {node[1]}
    return set().union(*(_columns_of(child) for child in node[1:]))


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
        >>> select_rows(audit, status=["failed_to_download"], host=["Example.com"])
    """
    condition: Node | None = parse_filter(expression) if expression is not None else None
    for column, values in (("status", list(status)), ("reason", list(reason)),
                           ("host", [_norm_host(h) for h in host])):
        if values:
            node: Node = ("in", column, False, values)
            condition = node if condition is None else ("and", condition, node)
    if condition is None or table.num_rows == 0:
        return table
    known = set(table.column_names)
    unknown = sorted(_columns_of(condition) - known - {"host"})
    if unknown:
        raise FilterError(f"unknown column {', '.join(unknown)}; columns are: "
                          f"{', '.join(sorted(known | {'host'}))}")
    work = table
    if "host" in _columns_of(condition) and "host" not in known:
        work = table.append_column(_HOST_FIELD, host_column(table))
    result = work.filter(_compile(condition, work.schema))
    return result.drop_columns([_HOST_FIELD]) if _HOST_FIELD in result.column_names else result


def _compile(node: Node, schema: pa.Schema) -> pc.Expression:
    kind = node[0]
    if kind == "and":
        return _compile(node[1], schema) & _compile(node[2], schema)
    if kind == "or":
        return _compile(node[1], schema) | _compile(node[2], schema)
    if kind == "not":
        return ~_compile(node[1], schema)
    name = _HOST_FIELD if node[1] == "host" and "host" not in schema.names else node[1]
    field, ftype = pc.field(name), schema.field(name).type
    if kind == "cmp":
        _, column, op, value = node
        if value is None:
            return field.is_null() if op == "==" else field.is_valid()
        target = field.cast(pa.string()) if isinstance(value, str) and \
            _is_other(ftype) else field
        equal = target == _literal(column, value, ftype)
        # Comparisons are never null: a null cell is unequal to every value.
        return (equal & field.is_valid()) if op == "==" else (~equal | field.is_null())
    _, column, negated, values = node
    present = [v for v in values if v is not None]
    strings = any(isinstance(v, str) for v in present) and _is_other(ftype)
    target = field.cast(pa.string()) if strings else field
    literals = [str(v) if strings else _literal(column, v, ftype) for v in present]
    member = target.isin(literals) if literals else pc.scalar(False)
    member = (member & field.is_valid()) | (field.is_null() if None in values
                                             else pc.scalar(False))
    return ~member if negated else member


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


# ---------------------------------------------------------------- why: rows in plain words


# "http://h/robots.txt (fetched 2026-11-21 21:33 UTC, sha256 efc4db540834…)"
_FILE = (r"(?P<file>\S+) \(fetched (?P<fetched>[^,)]*?)(?:, sha256 (?P<sha>[0-9a-f]+)…?)?\)")
_RULE_DENIAL = re.compile(
    _FILE + r" disallows (?P<path>.*) for user-agent (?P<ua>.*): rule `(?P<rule>.*)` "
    r"on line (?P<line>\d+)$", re.DOTALL)
_AI_CRAWLER = re.compile(
    _FILE + r" disallows (?P<path>.*) for AI-training crawler (?P<token>\S+) \(group "
    r"`User-agent: (?P<group>.*)`\): rule `(?P<rule>.*)` on line (?P<line>\d+)", re.DOTALL)
_UNREACHABLE = re.compile(r"(?P<file>\S+) could not be fetched \((?P<error>.*)\); ", re.DOTALL)
_ROBOTS_USAGE = re.compile(_FILE + r": robots\.txt line (?P<line>\d+): (?P<rule>.*)$",
                           re.DOTALL)
_TDM_FILE = re.compile(_FILE + r": tdmrep\.json entry (?P<entry>\d+) (?P<json>.*)$", re.DOTALL)
_XRT = re.compile(r"X-Robots-Tag: (?P<header>.*) \((?P<directive>[^()]*)\)$", re.DOTALL)

_STATUS_WORDS = {
    "success": "Downloaded",
    "disallowed": "Not downloaded",
    "failed_to_download": "Not downloaded",
    "failed_to_resize": "Downloaded but not kept",
}

# One plain-words template per reason code; {evidence} is the audit row's evidence,
# quoted. Origin-file reasons are built by functions below when the evidence
# has its usual shape, and fall back to these templates otherwise.
TEMPLATES: dict[str, str] = {
    Reason.REGISTRY_OPT_OUT: "the URL is on an opt-out list the dataset builder gave this "
                             "run: {evidence}.",
    Reason.ROBOTS_DISALLOWED: "the site's robots.txt disallows it: {evidence}.",
    Reason.ROBOTS_UNREACHABLE: "the site's robots.txt could not be fetched, and RFC 9309 "
                               "says a crawler must then assume everything is disallowed: "
                               "{evidence}.",
    Reason.AI_CRAWLER_BLOCKED: "the site's robots.txt shuts out AI-training crawlers while "
                               "letting other crawlers in, which the strict consent profile "
                               "reads as a refusal of AI training: {evidence}.",
    Reason.AIPREF_DISALLOWED: "an IETF AI preference says no AI training "
                              "(train-ai=n): {evidence}.",
    Reason.TDM_RESERVED: "text-and-data-mining rights are reserved (W3C TDMRep): "
                         "{evidence}.",
    Reason.AITXT_DISALLOWED: "the site's ai.txt disallows it: {evidence}.",
    Reason.X_ROBOTS_TAG: "the image's response carried an X-Robots-Tag directive against "
                         "AI use: {evidence}. Headers are read before the body, so no byte "
                         "of the image was stored.",
    Reason.METADATA_PROHIBITED: "rights metadata embedded in the image prohibits AI/ML "
                                "use: {evidence}. The image was read only to find this tag "
                                "and was then discarded; nothing of it was written.",
    Reason.NO_OPT_IN: "this run downloads only images whose owners explicitly permit AI "
                      "training (--consent opt-in), and no such permission was found: "
                      "{evidence}.",
    Reason.HTTP_ERROR: "the server did not serve the image: {evidence}.",
    Reason.TIMEOUT: "no complete response came within the time limit: {evidence}.",
    Reason.DNS_ERROR: "the host name could not be resolved: {evidence}.",
    Reason.CONNECTION_ERROR: "the connection failed or was cut off: {evidence}.",
    Reason.TLS_ERROR: "the secure (TLS) connection could not be set up: {evidence}.",
    Reason.TOO_LARGE: "the file is larger than this run accepts, so the rest of it was not "
                      "read: {evidence}.",
    Reason.TOO_MANY_REDIRECTS: "it redirected too many times: {evidence}.",
    Reason.BLOCKED_ADDRESS: "the host is on a private or reserved network address, which "
                            "consentfetch does not contact: {evidence}.",
    Reason.INVALID_URL: "it is not a usable http(s) URL: {evidence}.",
    Reason.CRAWL_DELAY_TOO_LONG: "the site's robots.txt asks for a longer wait between "
                                 "requests than this run accepts, and consentfetch never "
                                 "requests faster than a site asks, so the image was not "
                                 "requested: {evidence}.",
    Reason.DECODE_ERROR: "the file could not be read as an image: {evidence}.",
    Reason.IMAGE_TOO_SMALL: "the image is smaller than this run's minimum size: "
                            "{evidence}.",
    Reason.ASPECT_RATIO_TOO_LARGE: "the image is too long and thin for this run: "
                                   "{evidence}.",
    Reason.IMAGE_TOO_LARGE: "the image has more pixels than this run accepts (it was not "
                            "decoded): {evidence}.",
}


def explain_row(row: Mapping[str, Any],
                origins: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """One audit row in plain words, for a site owner.

    ``origins`` maps origin-file URLs (``http://host:port/robots.txt``) to
    their ``origins.parquet`` rows; with it, a sentence about robots.txt,
    ai.txt or tdmrep.json gives the file's full sha256 and fetch time::

        >>> explain_row({"status": "disallowed", "reason": "robots_disallowed",
        ...              "url": "https://example.com/art/a.jpg", "evidence": "https://"
        ...              "example.com/robots.txt (fetched 2026-11-21 14:02 UTC, sha256 "
        ...              "3f1c…) disallows /art/a.jpg for user-agent *: rule `Disallow: "
        ...              "/art/` on line 4"})
        'Not downloaded: your robots.txt at https://example.com/robots.txt (fetched
        2026-11-21 14:02 UTC, sha256 3f1c…) disallows /art/a.jpg for user-agent *, rule
        `Disallow: /art/` on line 4. The image itself was never requested.'
    """
    status = str(row.get("status") or "")
    head = _STATUS_WORDS.get(status, f"Status {status or 'unknown'}")
    if status == Status.SUCCESS:
        text = _explain_success(row)
    else:
        text = f"{head}: " + _explain_reason(row, origins or {})
    return text + _explain_context(row)


def _explain_success(row: Mapping[str, Any]) -> str:
    parts = ["Downloaded"]
    when = _when(row.get("decided_at"))
    if when:
        parts.append(f" on {when}")
    if row.get("http_status"):
        parts.append(f" (HTTP {row['http_status']})")
    text = "".join(parts) + ": no opt-out signal applied to it"
    if row.get("key"):
        text += f", and it is in the dataset as sample {row['key']}"
        if row.get("width") and row.get("height"):
            text += f" ({row['width']}x{row['height']}"
            if row.get("original_width") and row.get("original_height"):
                text += f", resized from {row['original_width']}x{row['original_height']}"
            text += ")"
    text += "."
    if row.get("sha256"):
        text += f" sha256 of the bytes received: {row['sha256']}."
    return text


def _explain_context(row: Mapping[str, Any]) -> str:
    bits = []
    profile = row.get("consent_profile")
    if profile:
        bits.append(f"consent profile: {profile}")
    ignored = row.get("ignored_checks")
    if ignored:
        bits.append(f"checks turned off for this run: {ignored.replace(',', ', ')}")
    when = _when(row.get("decided_at"))
    if when and row.get("status") != Status.SUCCESS:
        bits.insert(0, f"decided {when}")
    return f" ({'; '.join(bits)}.)" if bits else ""


def _explain_reason(row: Mapping[str, Any], origins: Mapping[str, Mapping[str, Any]]) -> str:
    reason = str(row.get("reason") or "")
    evidence = str(row.get("evidence") or "").strip()
    special = _SPECIAL.get(reason)
    if special is not None and evidence:
        text = special(row, evidence, origins)
        if text:
            return text
    template = TEMPLATES.get(reason)
    if template is None:
        text = f"reason {reason or 'unknown'}"
        return text + (f": {evidence}." if evidence else ".")
    return template.format(evidence=evidence.rstrip(".") or "no evidence was recorded")


def _file_words(match: re.Match[str], origins: Mapping[str, Mapping[str, Any]]) -> str:
    """``https://h/robots.txt (fetched …, sha256 …)``, completed from origins.parquet."""
    file_url = match.group("file")
    fetched = match.group("fetched")
    sha = match.group("sha")
    record = origins.get(file_url)
    # origins.parquet keeps the latest fetch of each file: use it only if it is
    # the very fetch the evidence names (same digest prefix), never a later one.
    full = record.get("sha256") if record is not None else None
    if isinstance(full, str) and sha and full.startswith(sha):
        sha = full
    digest = "" if not sha else f", sha256 {sha}" if len(sha) == 64 else f", sha256 {sha}…"
    return f"{file_url} (fetched {fetched}{digest})"


def _whose(row: Mapping[str, Any], file_url: str, kind: str) -> str:
    """"your robots.txt at X", or, after a redirect to another origin, "the robots.txt
    of the site it redirected to, X"."""
    if _origin(row.get("url")) not in (None, _origin(file_url)):
        return f"the URL redirected to another site, and that site's {kind} at"
    return f"your {kind} at"


def _origin(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    return f"{parts.scheme.lower()}://{parts.hostname}:{port}"


Origins = Mapping[str, Mapping[str, Any]]
_Explainer = Callable[[Mapping[str, Any], str, Origins], "str | None"]


def _rule_file(kind: str) -> _Explainer:
    def explain(row: Mapping[str, Any], evidence: str,
                origins: Mapping[str, Mapping[str, Any]]) -> str | None:
        m = _RULE_DENIAL.match(evidence)
        if m is None:
            return None
        return (f"{_whose(row, m.group('file'), kind)} {_file_words(m, origins)} disallows "
                f"{m.group('path')} for user-agent {m.group('ua')}, rule `{m.group('rule')}` "
                f"on line {m.group('line')}. The image itself was never requested.")
    return explain


def _ai_crawler(row: Mapping[str, Any], evidence: str,
                origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    m = _AI_CRAWLER.match(evidence)
    if m is None:
        return None
    return (f"{_whose(row, m.group('file'), 'robots.txt')} {_file_words(m, origins)} blocks "
            f"the AI-training crawler {m.group('token')} from {m.group('path')} (group "
            f"`User-agent: {m.group('group')}`, rule `{m.group('rule')}` on line "
            f"{m.group('line')}) while letting other crawlers in. The strict consent profile "
            "reads that as a refusal of AI training, so the image was never requested.")


def _unreachable(row: Mapping[str, Any], evidence: str,
                 origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    m = _UNREACHABLE.match(evidence)
    if m is None:
        return None
    file_url = m.group("file")
    record = origins.get(file_url) or {}
    when = _when(record.get("fetched_at")) if record.get("outcome") == "unreachable" else None
    at = f" at {when}" if when else ""
    return (f"the robots.txt at {file_url} could not be fetched{at} ({m.group('error')}). "
            "RFC 9309 says a crawler must then assume the whole site is disallowed, so "
            "nothing from it was requested.")


def _aipref(row: Mapping[str, Any], evidence: str,
            origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    m = _ROBOTS_USAGE.match(evidence)
    if m is not None:
        return (f"{_whose(row, m.group('file'), 'robots.txt')} {_file_words(m, origins)} says "
                f"`{m.group('rule')}` on line {m.group('line')}: an IETF AI preference "
                "against AI training. The image itself was never requested.")
    if evidence.lower().startswith("content-usage:"):
        return (f"the image's response carried the header `{evidence}`: an IETF AI "
                "preference against AI training. Headers are read before the body, so no "
                "byte of the image was stored.")
    return None


def _tdm(row: Mapping[str, Any], evidence: str,
         origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    m = _TDM_FILE.match(evidence)
    if m is not None:
        return (f"{_whose(row, m.group('file'), 'TDMRep file')} {_file_words(m, origins)} "
                f"reserves text-and-data-mining rights for this path (entry {m.group('entry')}"
                f": {m.group('json')}). The image itself was never requested.")
    if evidence.lower().startswith("tdm-reservation:"):
        return (f"the image's response carried `{evidence}` (W3C TDMRep): "
                "text-and-data-mining rights are reserved. Headers are read before the "
                "body, so no byte of the image was stored.")
    return None


def _xrt(row: Mapping[str, Any], evidence: str,
         origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    m = _XRT.match(evidence)
    if m is None:
        return None
    return (f"the image's response carried the header `X-Robots-Tag: {m.group('header')}`, "
            f"whose directive `{m.group('directive')}` asks not to use it for AI. Headers "
            "are read before the body, so no byte of the image was stored.")


def _registry(row: Mapping[str, Any], evidence: str,
              origins: Mapping[str, Mapping[str, Any]]) -> str | None:
    if re.search(r": sha256 [0-9A-Fa-f]{64}", evidence):
        return ("the image's content (its sha256) is on an opt-out list the dataset "
                f"builder gave this run: {evidence}. The image was downloaded to compute "
                "the hash and then discarded; nothing of it was written.")
    return (f"the URL is on an opt-out list the dataset builder gave this run: {evidence}. "
            "It was never requested.")


_SPECIAL: dict[str, _Explainer] = {
    Reason.ROBOTS_DISALLOWED: _rule_file("robots.txt"),
    Reason.AITXT_DISALLOWED: _rule_file("ai.txt"),
    Reason.AI_CRAWLER_BLOCKED: _ai_crawler,
    Reason.ROBOTS_UNREACHABLE: _unreachable,
    Reason.AIPREF_DISALLOWED: _aipref,
    Reason.TDM_RESERVED: _tdm,
    Reason.X_ROBOTS_TAG: _xrt,
    Reason.REGISTRY_OPT_OUT: _registry,
}


def _when(value: Any) -> str | None:
    """A timestamp as ``2026-11-21 14:02 UTC``."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, str) and value:
        try:
            return _when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return None


def _explained(table: pa.Table, output_dir: str,
               storage_options: dict[str, Any] | None) -> list[dict[str, Any]]:
    origins = {r["url"]: r for r in read_origins(output_dir, storage_options)}
    out = []
    for row in table.to_pylist():
        item = {c: row.get(c) for c in ROW_COLUMNS}
        item.update(http_status=row.get("http_status"),
                    decided_at=_iso(row.get("decided_at")),
                    consent_profile=row.get("consent_profile"),
                    ignored_checks=row.get("ignored_checks"),
                    explanation=explain_row(row, origins))
        out.append(item)
    return out


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def explain_url(output_dir: str, url: str, *,
                storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every audit row of ``url`` in ``output_dir``, each with an ``explanation``.

    Matches the exact string first; if no row has it, compares URLs with
    scheme and host lower-cased and default ports dropped
    (:func:`normalize_url`). Each dict holds ``key``, ``url``, ``status``,
    ``reason``, ``evidence``, ``http_status``, ``decided_at`` (ISO 8601),
    ``consent_profile``, ``ignored_checks`` and ``explanation``. An empty list
    means the URL is in no complete shard::

        >>> for row in explain_url("out/", "https://example.com/art/a.jpg"):
        ...     print(row["explanation"])
    """
    table = find_url(read_audit(output_dir, storage_options=storage_options), url)
    return _explained(table, output_dir, storage_options)


def explain_host(output_dir: str, host: str, *,
                 storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Like :func:`explain_url`, for every audit row whose URL is on ``host``."""
    table = read_audit(output_dir, host=host, storage_options=storage_options)
    return _explained(table, output_dir, storage_options)
