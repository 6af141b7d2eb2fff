"""The structure of the package: every module imports, and the imports between skntk's
modules form no cycle."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import skntk

PACKAGE_DIR = Path(skntk.__file__).parent
MODULES = sorted(["skntk"] + [f"skntk.{info.name}"
                              for info in pkgutil.iter_modules([str(PACKAGE_DIR)])])


def _module_path(name):
    if name == "skntk":
        return PACKAGE_DIR / "__init__.py"
    return PACKAGE_DIR / f"{name.split('.', 1)[1]}.py"


def skntk_imports(name):
    """The skntk modules that module ``name`` imports anywhere in its source (top
    level or inside functions), read from its syntax tree."""
    tree = ast.parse(_module_path(name).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names
                         if alias.name == "skntk" or alias.name.startswith("skntk."))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
                if base != "skntk" and not base.startswith("skntk."):
                    continue
            else:
                base = "skntk" + (f".{node.module}" if node.module else "")
            if base == "skntk":  # ``from . import x`` names modules
                found.update(f"skntk.{alias.name}" for alias in node.names
                             if f"skntk.{alias.name}" in MODULES)
            else:
                found.add(base)
    found.discard(name)
    return found


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                found = visit(child)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_detection_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_import_graph_is_acyclic():
    graph = {name: skntk_imports(name) for name in MODULES}
    assert graph["skntk.ntk"] >= {"skntk._kernel_engine"}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_kernel_engine_is_a_leaf():
    """The kernel engine imports no other skntk module than the table of activations and
    the input checks (both leaves), and the modules that compute kernels build on it."""
    leaves = {"skntk._activations", "skntk._validation"}
    assert skntk_imports("skntk._kernel_engine") == leaves
    for leaf in leaves:
        assert skntk_imports(leaf) == set(), leaf
    for user in ("skntk.ntk", "skntk._matrix_free", "skntk._switch"):
        assert "skntk._kernel_engine" in skntk_imports(user), user
