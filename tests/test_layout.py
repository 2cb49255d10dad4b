"""The package's layout: modules import one another without a cycle, none reaches up to the
callback from inside a function, and a long module says why it is long.

The import graph is read from the source (``ast``), not from a running interpreter, so a
lazy import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fastevalcb

PACKAGE = Path(fastevalcb.__file__).parent


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, modules: dict[str, Path]) -> list[str]:
    """The package modules one import statement loads (``from a import b``: ``a.b`` when
    it is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found = []
        for alias in node.names:
            sub = f"{node.module}.{alias.name}"
            found.append(sub if sub in modules else node.module)
        return [name for name in found if name in modules]
    return []


def _function_level(tree: ast.Module) -> set[int]:
    """ids of import nodes inside a function (lazy imports)."""
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner.update(
                id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
            )
    return inner


def _import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(every import, function-level imports only): ``{module: modules it imports}``."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    lazy: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        inner = _function_level(tree)
        graph[name], lazy[name] = set(), set()
        for node in ast.walk(tree):
            targets = set(_imported(node, modules)) - {name}
            graph[name] |= targets
            if id(node) in inner:
                lazy[name] |= targets
    return graph, lazy


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph, _ = _import_graph()
    assert len(graph) > 20 and "fastevalcb.callback" in graph["fastevalcb.tasks._base"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_reaches_up_to_the_callback_or_the_package_inside_a_function():
    _, lazy = _import_graph()
    up = {"fastevalcb", "fastevalcb.callback"}
    reach_ups = {name: sorted(targets & up) for name, targets in lazy.items() if targets & up}
    assert reach_ups == {}


def test_a_module_over_500_lines_says_why_in_its_docstring():
    unexplained = []
    for name, path in _modules().items():
        source = path.read_text()
        lines = len(source.splitlines())
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if lines > 520 and "lines" not in docstring:
            unexplained.append(f"{name} ({lines} lines)")
    assert unexplained == []


def test_no_module_tells_objects_apart_by_a_class_name_string():
    # ``type(x).__name__ == "ArraySource"``: a property or protocol says what a thing is
    pattern = re.compile(r"__name__\s*[!=]=\s*[\"'](?!__main__)")
    offenders = [name for name, path in _modules().items() if pattern.search(path.read_text())]
    assert offenders == []
    assert pattern.search('type(s).__name__ != "ArraySource"')  # the check finds one
