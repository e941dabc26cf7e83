"""The house's layers, read from the code's own imports: every arrow points down, no module
imports itself back through others, no migrator module grows past 400 lines.

The layers (README, "Layout"): ground at the bottom imports nothing of ours; topologies,
controller and migrator stand on it and never import each other; experiments composes them; the
wanmig command on top only collects subcommands. Inside migrator the subpackages are layered too.
Every package says in its docstring what it may import (``May import: ...``); this test holds
the table below against those docstrings and against every import, module-level or inside a
function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package => the packages it may import (besides itself and its own subpackages' modules)
LAYERS: dict[str, set[str]] = {
    "ground": set(),
    "topologies": {"ground"},
    "controller": {"ground"},
    "migrator": {"ground"},
    "migrator.memory": {"ground"},
    "migrator.codecs": {"ground", "migrator.memory"},
    "migrator.core": {"ground", "migrator.memory", "migrator.codecs"},
    "migrator.wire": {"ground", "migrator.memory", "migrator.codecs"},
    "migrator.transport": {"ground", "migrator.memory", "migrator.codecs", "migrator.core",
                           "migrator.wire"},
    "migrator.guest": {"ground", "migrator.memory", "migrator.wire"},
    "migrator.disk": {"ground", "migrator.memory"},
    "migrator.qemu": {"ground", "migrator.memory", "migrator.codecs", "migrator.core"},
    "experiments": {"ground", "topologies", "controller", "migrator"},
    "wanmig": {"ground", "topologies", "controller", "migrator", "experiments"},
}
TOP = ("ground", "topologies", "controller", "migrator", "experiments", "wanmig")
MAX_MIGRATOR_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in TOP for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = modules()


def resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) is, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module of ours) for every import in the file, wherever it stands."""
    me = module_name(path)
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = me.split(".") if is_pkg else me.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target.split(".")[0] in TOP:
                out.append((node.lineno, target))
    return out


def package_of(module: str) -> str:
    """The innermost package of LAYERS a module belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no package of LAYERS: add it to the table")


def may_import(importer: str, imported: str) -> bool:
    src, dst = package_of(importer), package_of(imported)
    # A package may use its own subpackages (migrator's top uses migrator.core), and a
    # package allowed below it with all its subpackages (experiments uses migrator.core).
    return any(dst == p or dst.startswith(p + ".") for p in {src} | LAYERS[src])


def test_every_import_points_down():
    wrong = []
    for name, path in MODULES.items():
        for line, target in imports_of(path):
            if not may_import(name, target):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} -> {target} "
                             f"({package_of(name)} may import {sorted(LAYERS[package_of(name)])})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_layer_table_itself_points_down():
    """No package may import, even through others, a package that may import it."""
    def reach(pkg: str, seen: set[str]) -> set[str]:
        for dep in LAYERS[pkg] - seen:
            seen.add(dep)
            reach(dep, seen)
        return seen
    loops = [p for p in LAYERS if p in reach(p, set())]
    assert not loops, f"the layer table has loops through {loops}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module that imports
    itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_cycles():
    graph = {name: {t for _, t in imports_of(path) if t != name}
             for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_package_says_what_it_owns_and_may_import(package):
    init = ROOT / package.replace(".", "/") / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    m = re.search(r"May import: (.+?)\.?\s*$", doc)
    assert doc.strip() and m, f"{init}: docstring without 'May import: ...': {doc!r}"
    said = {s.strip() for s in m.group(1).split(",")} - {"nothing of ours"}
    assert said == LAYERS[package], (f"{init} says it may import {sorted(said)}, the layer "
                                     f"table says {sorted(LAYERS[package])}")


def test_no_migrator_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for name, p in MODULES.items()
            if name.startswith("migrator") and (n := len(p.read_text().splitlines()))
            > MAX_MIGRATOR_LINES}
    assert long == {}, f"split these (over {MAX_MIGRATOR_LINES} lines): {long}"
