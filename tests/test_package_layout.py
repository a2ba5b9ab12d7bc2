"""The package's shape: no import cycles, consent/ does no file I/O, layout names.

Read from the source with :mod:`ast` (nothing is imported), so a function-level
import used to dodge a cycle counts like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import consentfetch
from consentfetch import layout

PACKAGE = Path(consentfetch.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every module ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            yield from subs or [base]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start → ... → start, if there is one (depth-first, bounded by the graph)."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_from(name, graph))]
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_graph_sees_function_level_imports() -> None:
    # the check above is worth something only if a late import is an edge too
    assert "consentfetch.check" in _graph()["consentfetch.cli.check"]


_STD_STREAMS = {"stdout", "stderr", "__stdout__", "__stderr__"}


def _terminal_writes(path: Path) -> list[str]:
    """Where ``path`` prints or reaches for ``sys.stdout`` / ``sys.stderr``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "print":
            found.append(f"print() on line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr in _STD_STREAMS \
                and isinstance(node.value, ast.Name) and node.value.id == "sys":
            found.append(f"sys.{node.attr} on line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" \
                and _STD_STREAMS & {a.name for a in node.names}:
            found.append(f"from sys import ... on line {node.lineno}")
    return found


def test_the_cli_is_the_only_code_that_prints() -> None:
    """The library logs; only the commands (consentfetch/cli/) write to the terminal."""
    printing = {name: where for name, path in _modules().items()
                if not name.startswith("consentfetch.cli")
                and (where := _terminal_writes(path))}
    assert not printing
    assert _terminal_writes(PACKAGE / "cli" / "__init__.py")  # the check sees a print()


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n.startswith("consentfetch.consent")))
def test_consent_does_no_file_io(name: str) -> None:
    """Pure decision code: no file system, no table reading (the tables layer does that)."""
    modules = _modules()
    imported = set(_imports(name, modules[name], modules))
    forbidden = {m for m in imported if m.split(".")[0] in ("fsspec", "pyarrow")}
    forbidden |= imported & {"consentfetch.tables", "consentfetch.reader", "consentfetch.lists",
                             "consentfetch.writer", "consentfetch.csvrecords"}
    assert not forbidden


def test_readme_maps_every_module() -> None:
    """README's package map names every module and package, and nothing that is gone.

    A module may be mapped by the package that replaces it (``audit/`` for ``audit.py``).
    """
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Package map", 1)[1].split("```", 2)[1]
    mapped = {line.split()[0].rstrip("/") for line in section.splitlines()[2:]
              if line.startswith("  ") and not line.startswith("   ")}
    found = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem not in ("__init__", "__main__", "_version"))
             or (p / "__init__.py").exists()}
    found |= {f"{package}/{p.stem}" for package in ("distribute", "cli")
              for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
    names = {name.removesuffix(".py") for name in mapped}
    missing = sorted(found - names)
    stale = sorted(name for name in names if not (PACKAGE / f"{name}.py").exists()
                   and not (PACKAGE / name / "__init__.py").exists())
    assert not missing and not stale, f"not in the map: {missing}; gone: {stale}"


# ------------------------------------------------------------------ layout


def test_shard_file_names() -> None:
    assert layout.shard_files(12) == ("00012.tar", "00012.parquet", "00012_stats.json")
    assert layout.shard_files(123456)[2] == "123456_stats.json"
    assert layout.temporary("00012.tar") == "00012.tar.tmp"
    assert layout.member_name("000120003", "jpg") == "000120003.jpg"
    assert layout.member_key("000120003.json") == "000120003"


@pytest.mark.parametrize(("name", "completed", "shard"), [
    ("00012_stats.json", 12, 12), ("00012.tar", None, 12), ("00012.parquet", None, 12),
    ("00012.tar.tmp", None, None), ("origins.parquet", None, None), ("run.json", None, None),
    ("notes_stats.json", None, None), ("00012.txt", None, None),
])
def test_shard_of_a_name(name: str, completed: int | None, shard: int | None) -> None:
    assert layout.completed_shard(name) == completed
    assert layout.shard_of(name) == shard


@pytest.mark.parametrize(("name", "ours"), [
    ("00000.tar", True), ("00000.parquet", True), ("00000_stats.json", True),
    ("00000.tar.tmp", True), ("run.json", True), ("origins.parquet", True),
    ("run.json.tmp", True), ("urls.parquet", False), ("report.html", False),
    ("rechecks", True),  # --overwrite removes them: a new run reuses their keys
])
def test_run_files(name: str, ours: bool) -> None:
    assert layout.is_run_file(name) is ours
