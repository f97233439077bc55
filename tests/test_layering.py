"""core/ is a library: it must not import app, Qt or pyqtgraph."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "superqt")


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_core_source_never_imports_app_or_qt():
    offenders = []
    files = sorted((REPO / "core").rglob("*.py"))
    assert files, "core/ has no Python files"
    for path in files:
        for lineno, name in _imports(path):
            if name.split(".")[0] in FORBIDDEN or name == "dvsapp.app" or name.startswith("dvsapp.app."):
                offenders.append(f"{path.relative_to(REPO)}:{lineno} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_importing_core_loads_no_qt():
    code = (
        "import sys, pkgutil, importlib, dvsapp.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'dvsapp.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m.startswith('dvsapp.app')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"


def test_ruff_lint_and_format_are_clean():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    ruff = Path(sys.executable).with_name("ruff")
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    repo = Path(__file__).resolve().parents[1]
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([exe, *args], cwd=repo, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout[-2000:]}"
