"""One installable package: pyproject maps core/, app/ and recordings/ into ``dvsapp``."""

from __future__ import annotations

import ast
import tomllib

from conftest import REPO

PACKAGE_DIRS = {"dvsapp.core": "core", "dvsapp.app": "app", "dvsapp.recordings": "recordings"}


def _setuptools():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_source_folder_is_a_listed_package():
    st = _setuptools()
    assert st["package-dir"] == PACKAGE_DIRS
    expected = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            expected.add(".".join([name, *rel.parts]) if rel.parts else name)
        for py in (REPO / folder).rglob("*.py"):
            assert (py.parent / "__init__.py").is_file(), f"{py.relative_to(REPO)} is outside a package"
    assert set(st["packages"]) == expected


def test_nothing_imports_the_old_top_level_names():
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("core", "app")
            ]
    assert not offenders, "\n".join(offenders)


def test_bundled_data_is_package_data():
    from dvsapp.core.resources import bundled_checkpoint, bundled_labels, bundled_recording

    data = _setuptools()["package-data"]
    assert bundled_checkpoint().is_file() and bundled_recording().is_file() and bundled_labels().is_file()
    assert bundled_recording().name in data["dvsapp.recordings"]
    assert bundled_labels().name in data["dvsapp.recordings"]
    assert any(bundled_checkpoint().match(pattern) for pattern in data["dvsapp.core"])
