"""The ``dvsapp`` entry point: command routing and one-line errors (exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _dvsapp(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvsapp.app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def test_every_command_group_is_registered():
    proc = _dvsapp("--help")
    assert proc.returncode == 0
    for name in (
        "info",
        "convert",
        "simulate",
        "classify",
        "record",
        "train",
        "eval",
        "demo",
        "replay",
        "gui",
        "label",
    ):
        assert f" {name} " in proc.stdout, name


def test_label_with_a_file_means_label_edit(tmp_path):
    missing = tmp_path / "nothing.aedat4"
    proc = _dvsapp("label", str(missing))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "no such file" in lines[0]
    # the subcommands themselves are still reached
    show = _dvsapp("label", "show", str(REPO / "recordings" / "gestures.aedat4"))
    assert show.returncode == 0 and "11 segment(s)" in show.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for X11/Wayland")
@pytest.mark.parametrize("command", [("demo",), ("label", "recordings/gestures.aedat4")])
def test_gui_commands_without_a_display_fail_in_one_line(command):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = _dvsapp(*command, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0]
