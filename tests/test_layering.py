"""The layer contract of dvsapp: no import cycle, no upward import, core imports no Qt and prints nothing.

The import graph is built from the source (every ``import`` statement, those inside
functions too) of every module of ``dvsapp.core`` and ``dvsapp.app``:

* ``from X import Y`` is an edge to ``X.Y`` when that is a module, else to ``X``;
* importing a module imports its parent packages, so an edge to ``a.b.c`` is also an
  edge to the packages ``a.b`` and ``a`` (those the importing module is not inside);
* a package ``__init__`` stands for what it imports: an edge to a package is an edge
  to every module its ``__init__`` imports (transitively), and ``__init__`` nodes
  then leave the graph.  So a package may re-export its submodules, but a submodule
  that imports its own package's ``__init__`` (which imports it back) is a cycle.

Cycles are looked for among the remaining modules, in the imports that run (those
under ``if TYPE_CHECKING:`` never do; they still count for the layers).  Layers are listed explicitly
in :data:`LAYERS`, lowest first; a module may import its own layer and lower
ones only.  A module that matches no layer fails the test, so a new module
needs a decision here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from conftest import REPO

ROOTS = {"dvsapp.core": REPO / "core", "dvsapp.app": REPO / "app"}

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # plain data and helpers every layer uses
    (
        "base",
        (
            "dvsapp.core",
            "dvsapp.core.events",
            "dvsapp.core.errors",
            "dvsapp.core.gestures",
            "dvsapp.core.atomic",
            "dvsapp.core.resources",
        ),
    ),
    # events in and out of files, and the pure event -> event / event -> frame stages
    ("data", ("dvsapp.core.io", "dvsapp.core.binning", "dvsapp.core.filters", "dvsapp.core.emulator")),
    # how events become model input, and the model
    ("model", ("dvsapp.core.recipe", "dvsapp.core.model")),
    # peers that each use the layers below: a classifier around a model; label files and
    # tools (they run a classifier handed to them, never load one)
    ("consumers", ("dvsapp.core.classify", "dvsapp.core.labels")),
    # synthetic recordings come with labels (Segment, the label CSV writer)
    ("synth", ("dvsapp.core.synth",)),
    # live and replayed sources; the synthetic source renders synth scenes
    ("sources", ("dvsapp.core.sources",)),
    # source -> recipe -> classifier -> sinks
    ("pipeline", ("dvsapp.core.pipeline",)),
    # datasets, training and evaluation use everything above
    ("train", ("dvsapp.core.train",)),
    # what a person touches: the GUI, then the command modules that open it, then the CLI
    ("gui", ("dvsapp.app", "dvsapp.app.gui")),
    ("commands", ("dvsapp.app.commands",)),
    ("cli", ("dvsapp.app.cli", "dvsapp.app.__main__")),
]

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    # TEMPORARY: each entry is an import that breaks the contract today, (importing
    # module, imported module or package), with the owner who removes it.  The test
    # fails on every other violation, and on an entry here that no longer happens, so
    # this list only shrinks.  Keep it short.
}

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "superqt")
STREAMS = ("stdout", "stderr", "__stdout__", "__stderr__")


# --------------------------------------------------------------------------- the graph


def module_files() -> dict[str, Path]:
    """Every module of dvsapp.core and dvsapp.app -> its file (a package is its ``__init__.py``)."""
    out = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if "__pycache__" in parts:
                continue
            out[".".join([prefix, *parts])] = path
    return out


def _is_package(name: str, files: Mapping[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (they never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    out |= {id(n) for n in ast.walk(stmt)}
    return out


def imports_of(
    name: str, tree: ast.AST, files: Mapping[str, Path], *, type_checking: bool = True
) -> Iterable[tuple[int, str]]:
    """``(line, imported name)`` for every import in ``tree`` (module ``name``), resolved as above.

    ``type_checking=False`` leaves out the imports under ``if TYPE_CHECKING:``.
    """
    package = name if _is_package(name, files) else name.rpartition(".")[0]
    skip = set() if type_checking else _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield node.lineno, sub if sub in files else module


def raw_graph(files: Mapping[str, Path], *, type_checking: bool = True) -> dict[str, dict[str, int]]:
    """Module -> {imported dvsapp module: first line}, before packages are expanded."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for lineno, target in imports_of(name, tree, files, type_checking=type_checking):
            if not target.startswith("dvsapp."):
                continue
            parts = target.split(".")
            if target in files and target != name:
                edges.setdefault(target, lineno)
            # its parent packages run first (unless ``name`` is inside them: they already run)
            for k in range(2, len(parts)):
                t = ".".join(parts[:k])
                if t in files and not (name + ".").startswith(t + "."):
                    edges.setdefault(t, lineno)
        graph[name] = edges
    return graph


def expand_packages(graph: Mapping[str, Mapping[str, int]], packages: set[str]) -> dict[str, dict[str, int]]:
    """Replace every edge to a package by edges to what its ``__init__`` imports (transitively); drop packages."""

    def through(pkg: str, seen: set[str]) -> set[str]:
        out: set[str] = set()
        for t in graph.get(pkg, {}):
            if t in packages:
                if t not in seen:
                    seen.add(t)
                    out |= through(t, seen)
            else:
                out.add(t)
        return out

    expanded: dict[str, dict[str, int]] = {}
    for name, edges in graph.items():
        if name in packages:
            continue
        new: dict[str, int] = {}
        for t, line in edges.items():
            for u in through(t, {t}) if t in packages else {t}:
                new.setdefault(u, line)
        expanded[name] = new
    return expanded


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (two or more modules, or a self-import), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's algorithm
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_of(name: str, layers=LAYERS) -> int | None:
    """Index of the layer whose longest matching prefix names ``name``; ``None`` when none does."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def upward_edges(graph: Mapping[str, Iterable[str]], layers=LAYERS) -> list[tuple[str, str]]:
    """Edges from a module to a module of a higher layer (sorted)."""
    out = []
    for a, targets in graph.items():
        la = layer_of(a, layers)
        for b in targets:
            lb = layer_of(b, layers)
            if la is not None and lb is not None and lb > la:
                out.append((a, b))
    return sorted(out)


def edges_in_cycles(graph: Mapping[str, Iterable[str]], cycles: list[list[str]]) -> set[tuple[str, str]]:
    """The edges that run inside a cycle's component."""
    out = set()
    for comp in cycles:
        members = set(comp)
        for a in comp:
            out |= {(a, b) for b in graph.get(a, ()) if b in members}
    return out


def prints_and_qt(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` for each print(), use of sys.stdout / sys.stderr, and Qt or app import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append((node.lineno, "calls print()"))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
            and node.attr in STREAMS
        ):
            found.append((node.lineno, f"uses sys.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            found += [(node.lineno, f"imports sys.{a.name}") for a in node.names if a.name in STREAMS]
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in QT_MODULES or n == "dvsapp.app" or n.startswith("dvsapp.app."):
                    found.append((node.lineno, f"imports {n}"))
    return found


# --------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    found = module_files()
    assert "dvsapp.core.events" in found and "dvsapp.app.cli" in found, sorted(found)[:5]
    return found


@pytest.fixture(scope="module")
def graph(files) -> dict[str, dict[str, int]]:
    """Every import, those under ``if TYPE_CHECKING:`` too: the layer contract covers types as well."""
    packages = {n for n in files if _is_package(n, files)}
    return expand_packages(raw_graph(files), packages)


@pytest.fixture(scope="module")
def runtime_graph(files) -> dict[str, dict[str, int]]:
    """The imports that run (not those under ``if TYPE_CHECKING:``): a cycle is about these."""
    packages = {n for n in files if _is_package(n, files)}
    return expand_packages(raw_graph(files, type_checking=False), packages)


def is_known(edge: tuple[str, str], known=KNOWN_VIOLATIONS) -> bool:
    """True when ``edge`` is (or, for a package entry, lies inside) an entry of ``known``."""
    a, b = edge
    return any(a == ka and (b == kb or b.startswith(kb + ".")) for ka, kb in known)


def _where(files, graph, a: str, b: str) -> str:
    return f"{files[a].relative_to(REPO)}:{graph[a][b]} imports {b}"


def test_every_module_has_a_layer(files):
    missing = [n for n in files if layer_of(n) is None]
    assert not missing, f"modules in no layer of LAYERS (decide where they belong): {missing}"


def test_no_import_cycles(files, runtime_graph):
    cycles = find_cycles(runtime_graph)
    bad = sorted(e for e in edges_in_cycles(runtime_graph, cycles) if not is_known(e))
    lines = [_where(files, runtime_graph, a, b) for a, b in bad]
    assert not bad, "import cycles:\n" + "\n".join(lines) + f"\ncomponents: {cycles}"


def test_no_upward_imports(files, graph):
    bad = [e for e in upward_edges(graph) if not is_known(e)]
    lines = [
        f"{_where(files, graph, a, b)} (layer {LAYERS[layer_of(a)][0]} -> {LAYERS[layer_of(b)][0]})"
        for a, b in bad
    ]
    assert not bad, "upward imports:\n" + "\n".join(lines)


def test_known_violations_still_happen(graph, runtime_graph):
    """An entry of KNOWN_VIOLATIONS that no longer happens must be deleted (the list only shrinks)."""
    cycles = find_cycles(runtime_graph)
    happening = set(upward_edges(graph)) | edges_in_cycles(runtime_graph, cycles)
    stale = [k for k in KNOWN_VIOLATIONS if not any(is_known(e, {k: ""}) for e in happening)]
    assert not stale, f"fixed, delete from KNOWN_VIOLATIONS: {stale}"


def test_core_prints_nothing_and_imports_no_qt_or_app(files):
    offenders = []
    for name, path in files.items():
        if not name.startswith("dvsapp.core"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(REPO)}:{line} {what}" for line, what in prints_and_qt(tree)]
    assert not offenders, "\n".join(offenders)


def test_importing_core_loads_no_qt():
    code = (
        "import sys, pkgutil, importlib, dvsapp.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'dvsapp.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r} or m.startswith('dvsapp.app')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"


# --------------------------------------------------------------------------- the checker can fail


def test_checker_reports_a_cycle_an_upward_edge_and_a_print():
    layers = [("low", ("pkg.low",)), ("high", ("pkg.high",))]
    graph = {
        "pkg.low.a": {"pkg.low.b"},
        "pkg.low.b": {"pkg.low.c"},
        "pkg.low.c": {"pkg.low.a", "pkg.high.x"},  # closes a -> b -> c -> a; goes up to high
        "pkg.high.x": {"pkg.low.a"},  # down: allowed
        "pkg.high.y": {"pkg.high.y"},  # a module importing itself
    }
    cycles = find_cycles(graph)
    # the upward edge also closes a loop through high.x: one component of four
    assert cycles == [["pkg.high.x", "pkg.low.a", "pkg.low.b", "pkg.low.c"], ["pkg.high.y"]]
    assert upward_edges(graph, layers) == [("pkg.low.c", "pkg.high.x")]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("pkg.lower", layers) is None  # a prefix must end at a dot

    tree = ast.parse(
        "import sys\nfrom PySide6 import QtCore\ndef f():\n    print('x')\n    sys.stderr.write('y')\n"
        "from sys import stdout\nimport dvsapp.app.cli\n"
    )
    whats = [w for _, w in prints_and_qt(tree)]
    assert whats.count("calls print()") == 1 and "uses sys.stderr" in whats
    assert "imports sys.stdout" in whats and "imports PySide6" in whats and "imports dvsapp.app.cli" in whats
    assert prints_and_qt(ast.parse("import logging\nlogging.getLogger(__name__).info('x')\n")) == []


def test_packages_expand_to_what_their_init_imports(tmp_path):
    """A re-export is fine; a submodule importing its own package's __init__ that imports it back is a cycle."""
    root = tmp_path / "core"
    (root / "p").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "p" / "__init__.py").write_text("from dvsapp.core.p.a import A\nfrom dvsapp.core.p.b import B\n")
    (root / "p" / "a.py").write_text("from dvsapp.core.p.b import B\nA = 1\n")
    (root / "p" / "b.py").write_text(
        "def f():\n    from dvsapp.core.p import A\nB = 2\n"
    )  # lazy, still counted
    (root / "user.py").write_text("from dvsapp.core.p import A\n")
    files = {
        "dvsapp.core": root / "__init__.py",
        "dvsapp.core.p": root / "p" / "__init__.py",
        "dvsapp.core.p.a": root / "p" / "a.py",
        "dvsapp.core.p.b": root / "p" / "b.py",
        "dvsapp.core.user": root / "user.py",
    }
    raw = raw_graph(files)
    assert raw["dvsapp.core.p.a"] == {"dvsapp.core.p.b": 1}  # its own package is not an edge
    assert "dvsapp.core.p" in raw["dvsapp.core.user"]
    graph = expand_packages(raw, {"dvsapp.core", "dvsapp.core.p"})
    assert set(graph["dvsapp.core.user"]) == {"dvsapp.core.p.a", "dvsapp.core.p.b"}
    assert find_cycles(graph) == [["dvsapp.core.p.a", "dvsapp.core.p.b"]]  # b -> p/__init__ -> a -> b
    (root / "p" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dvsapp.core.p import A\n"
    )
    assert "dvsapp.core.p" in raw_graph(files)["dvsapp.core.p.b"]  # still a dependency (layers)
    assert (
        find_cycles(expand_packages(raw_graph(files, type_checking=False), {"dvsapp.core", "dvsapp.core.p"}))
        == []
    )


def test_ruff_lint_and_format_are_clean():
    import shutil

    ruff = Path(sys.executable).with_name("ruff")
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout[-2000:]}"
