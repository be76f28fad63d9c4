"""The package's layers, read from the source with ``ast`` (nothing is imported).

- ``testbed.core`` is the bottom layer: it imports only ``testbed.core`` and the pure records of
  ``testbed.records`` (no scenario, calls, report, censor or net), so the sans-IO engine can be
  used and tested on its own; ``testbed.records`` imports nothing else from testbed;
- no module import cycles anywhere in ``testbed``; between packages none either, apart from the
  one lazy edge listed in ``KNOWN_PACKAGE_EDGES`` (inside a function, so it cannot deadlock an
  import; it is listed here so that any new cycle fails).

Imports under ``if TYPE_CHECKING:`` are annotations only and do not count. A package's
``__init__`` importing its own submodules does not count either (Python always runs a package's
``__init__`` before its submodules; ``from testbed.calls import metrics`` names the submodule).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "testbed"

# Lazy imports that close a package-level cycle, with the reason each is tolerated for now.
KNOWN_PACKAGE_EDGES = {
    # scenario/call_schema.py checks a call's `profile:` against the profiles shipped with
    # testbed.calls (data files), importing it inside the validator; calls imports scenario's schemas.
    ("testbed.scenario", "testbed.calls"),
}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The testbed module a dotted import name refers to (a module, or the package holding it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except what sits under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(module: str) -> set[str]:
    """The testbed modules ``module`` imports at run time, anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    deps: set[str | None] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            deps.update(_owner(a.name) for a in node.names if a.name.startswith("testbed"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("testbed"):
            assert node.module is not None
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            if len(subs) == len(node.names):
                deps.update(subs)  # `from pkg import submodule`: the submodule, not pkg's namespace
            else:
                deps.add(_owner(node.module))
                deps.update(subs)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}: relative import; the package uses absolute imports")
    deps.discard(None)
    deps.discard(module)
    return {d for d in deps if d is not None}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that starts and ends at the same node), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)) is not None:
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)) is not None:
            return found
    return None


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_core_imports_only_core() -> None:
    bad = [
        f"{m} imports {d}"
        for m in sorted(MODULES)
        if m == "testbed.core" or m.startswith("testbed.core.")
        for d in sorted(imports_of(m))
        if not d.startswith(("testbed.core.", "testbed.records.")) and d not in ("testbed.core", "testbed.records")
    ]
    assert not bad, "testbed.core is the bottom layer:\n" + "\n".join(bad)


def test_no_module_import_cycles() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        for d in imports_of(m):
            if _package(m) != _package(d) and (_package(m), _package(d)) not in KNOWN_PACKAGE_EDGES:
                graph.setdefault(_package(m), set()).add(_package(d))
    cycle = _cycle(graph)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_known_package_edges_still_exist() -> None:
    # An edge that is gone must leave the list, or the list would hide a new cycle through it.
    edges = {(_package(m), _package(d)) for m in MODULES for d in imports_of(m)}
    assert KNOWN_PACKAGE_EDGES <= edges


def test_the_checks_see_a_cycle_and_skip_type_checking_imports() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    # core/policy/state.py names CompiledRule for annotations only: rule.py imports state.py.
    assert "testbed.core.policy.rule" not in imports_of("testbed.core.policy.state")
    assert "testbed.core.policy.state" in imports_of("testbed.core.policy.rule")
