"""Starting and stopping the GUI: the system-library check before Qt loads, and Ctrl-C at any moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvsapp.app.gui import system_libs
from dvsapp.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or system_libs.qt_folder() is None,
    reason="the library check reads Linux Qt builds",
)


# ------------------------------------------------------------------ system libraries
@linux_only
def test_the_check_reads_what_the_xcb_plugin_links():
    qt = system_libs.qt_folder()
    needed = system_libs.elf_needed(qt / "plugins" / "platforms" / "libqxcb.so")
    assert "libxcb.so.1" in needed and "libQt6XcbQpa.so.6" in needed  # the plugin's own link list
    names = system_libs.needed_libraries("xcb")
    # the icccm / keysyms libraries that a fresh machine lacks (Qt's own hint names xcb-cursor)
    assert {"libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0", "libxkbcommon-x11.so.0"} <= set(
        names
    )
    assert not any(
        n.startswith(("libQt6", "libicu", "libc.so", "libstdc++")) for n in names
    )  # bundled / runtime
    assert set(system_libs.needed_libraries("core")) < set(names)
    assert all(n in system_libs.PACKAGES for n in names), set(names) - set(system_libs.PACKAGES)


@linux_only
def test_a_missing_library_is_named_with_its_package(monkeypatch):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    gone = {"libxcb-icccm.so.4", "libxkbcommon-x11.so.0"}
    with pytest.raises(ConfigError) as info:
        system_libs.require_gui_libraries(finder=lambda name: name not in gone)
    text = str(info.value)
    assert "\n" not in text
    assert "libxcb-icccm.so.4" in text and "libxkbcommon-x11.so.0" in text
    assert "libxcb-icccm4" in text and "libxkbcommon-x11-0" in text and "apt-get install" in text
    system_libs.require_gui_libraries(finder=lambda name: True)  # all there: nothing raised
    # the offscreen platform loads no xcb library: only a missing core library counts there
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    system_libs.require_gui_libraries(finder=lambda name: name not in gone)
    with pytest.raises(ConfigError, match="libEGL.so.1.*libegl1"):
        system_libs.require_gui_libraries(finder=lambda name: name != "libEGL.so.1")


@linux_only
@pytest.mark.parametrize(
    "command", [["demo"], ["replay", str(RECORDING)], ["gui"], ["label", str(RECORDING)]]
)
def test_gui_commands_name_a_missing_library_in_one_line_before_qt_loads(command, tmp_path):
    """A child process whose loader 'lacks' libxcb-icccm.so.4 (the finder is replaced): exit 2, one line."""
    code = (
        "import sys\n"
        "import dvsapp.app.gui.system_libs as s\n"
        "s.loadable = lambda name: name != 'libxcb-icccm.so.4'\n"
        "from dvsapp.app.cli import main\n"
        f"main({command!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env.update(DISPLAY=":99", DVSAPP_SETTINGS=str(tmp_path / "s.ini"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "libxcb-icccm.so.4" in lines[0] and "libxcb-icccm4" in lines[0], lines[0]


# ------------------------------------------------------------------ Ctrl-C
def _replay(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    settings = tmp_path / "settings.ini"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", DVSAPP_SETTINGS=str(settings))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvsapp.app", "replay", str(RECORDING)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    return proc, settings


def _interrupt(proc: subprocess.Popen, within_s: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {within_s} s after Ctrl-C; stderr: {err}")
    return proc.returncode, err, time.monotonic() - t0


#: exit statuses of an interrupted run: 130 from dvsapp; killed by SIGINT (-2, which a shell also
#: reports as 130) when the signal came before Python installed any handler (nothing had started)
INTERRUPTED = (0, 130, -signal.SIGINT)


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
@pytest.mark.parametrize("delay_s", [0.8, 1.5, 3.0])
def test_ctrl_c_during_start_up_exits_at_once(tmp_path, delay_s):
    proc, _ = _replay(tmp_path)
    time.sleep(delay_s)  # importing the commands, torch, Qt, building the window, loading the model
    code, err, _ = _interrupt(proc, within_s=15)
    assert code in INTERRUPTED, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert {p.name for p in tmp_path.iterdir()} <= {"settings.ini"}  # nothing else written


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
def test_ctrl_c_while_playing_closes_the_window_cleanly(tmp_path):
    proc, settings = _replay(tmp_path)
    deadline = time.monotonic() + 90
    # the window writes the file to its recent-files list when the replay starts
    while not (settings.is_file() and "recent" in settings.read_text(errors="replace")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the replay never started"
        time.sleep(0.2)
    time.sleep(2.0)  # playing: windows reach the model, views redraw
    code, err, _ = _interrupt(proc, within_s=20)
    assert code in INTERRUPTED, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    text = settings.read_text(errors="replace")
    assert "geometry" in text  # the window closed the normal way: its layout was saved
