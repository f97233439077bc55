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


def test_version():
    from dvsapp.app.cli import version

    proc = _dvsapp("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"dvsapp {version()}"
    assert version()[0].isdigit()


# ------------------------------------------------------------------ outputs that cannot be written
RECORDING = REPO / "recordings" / "gestures.aedat4"

#: command -> its arguments for an output path ``out`` (a file, or the train folder)
WRITERS = {
    "convert-h5": lambda out: ["convert", RECORDING, out / "a.h5"],
    "convert-aedat4": lambda out: ["convert", RECORDING, out / "a.aedat4"],
    "simulate": lambda out: ["simulate", "--gestures", "1", "--quiet", out / "s.aedat4"],
    "record": lambda out: ["record", out / "r.aedat4", "--source", "synthetic:1", "--seconds", "0.3"],
    "label-export": lambda out: ["label", "export", RECORDING, "--out", out / "d.h5"],
    "replay-export": lambda out: ["replay", RECORDING, "--export", out / "v.mp4", "--duration", "0.3"],
    "eval-report": lambda out: ["eval", RECORDING, "--report", out / "r.json", "--quiet"],
    "eval-confusion": lambda out: ["eval", RECORDING, "--confusion", out / "c.png", "--quiet"],
    "classify-out": lambda out: ["classify", RECORDING, "--json", "--out", out / "p.csv"],
    "train": lambda out: ["train", "--out", out / "run", "--epochs", "1", "--quiet"],
}


def _cli(args):
    from typer.testing import CliRunner

    from dvsapp.app.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs (root ignores file modes, not a read-only mount); skipped where mounting is not allowed."""
    folder = tmp_path / "ro"
    folder.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {proc.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
@pytest.mark.parametrize("command", list(WRITERS))
def test_an_output_in_place_of_a_folder_is_one_line_and_leaves_nothing(tmp_path, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    args = WRITERS[command](blocker)
    target = next(a for a in args if str(a).startswith(str(blocker)))
    line = _one_line_error(_cli(args), str(target))
    assert "not a folder" in line or "Not a directory" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert blocker.read_text() == "a file where the output folder should be"


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
@pytest.mark.parametrize("command", list(WRITERS))
def test_an_output_on_a_read_only_file_system_is_one_line_and_leaves_nothing(read_only_dir, command):
    args = WRITERS[command](read_only_dir)
    target = next(a for a in args if str(a).startswith(str(read_only_dir)))
    _one_line_error(_cli(args), str(target), "Read-only file system")
    assert list(read_only_dir.iterdir()) == []


def test_check_writable_names_the_output_and_creates_nothing(tmp_path):
    from dvsapp.core.atomic import check_writable
    from dvsapp.core.errors import OutputError

    assert check_writable(tmp_path / "new.h5") == tmp_path / "new.h5"
    assert check_writable(tmp_path / "a" / "b", folder=True) == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # the probe left nothing, made no folder
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "x.h5")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path / "d")
    with pytest.raises(OutputError, match="No space left"):
        check_writable(tmp_path / "x.aedat4", need_bytes=1 << 62)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
def test_converting_to_aedat4_on_a_full_disk_stops_before_writing(tmp_path):
    """dv-processing's writer aborts the process on a full disk: the space is checked first."""
    folder = tmp_path / "small"
    folder.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        out = folder / "a.aedat4"
        _one_line_error(_cli(["convert", RECORDING, out]), str(out), "No space left", "MB needed")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.skipif(not RECORDING.is_file(), reason="needs the bundled recording")
@pytest.mark.parametrize(
    "command",
    ["convert-h5", "simulate", "record", "label-export", "replay-export", "eval-report", "classify-out"],
)
def test_an_existing_output_is_refused_in_one_wording(tmp_path, command):
    from dvsapp.core.errors import OUTPUT_EXISTS

    args = WRITERS[command](tmp_path)
    target = next(a for a in args if str(a).startswith(str(tmp_path)))
    target.write_text("keep me")
    line = _one_line_error(_cli(args), str(target))
    assert line == f"dvsapp: error: {target}: {OUTPUT_EXISTS}" and "--force" in line
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("command", [["classify", "--source"], ["record", "OUT", "--source"]])
def test_an_unknown_source_scheme_is_named_with_the_known_ones(tmp_path, command):
    args = [str(tmp_path / "r.h5") if a == "OUT" else a for a in command]
    line = _one_line_error(_cli([*args, "bogus://x"]), "bogus://x", "unknown source scheme 'bogus'")
    for scheme in ("file", "dv", "inivation", "webcam", "synthetic"):
        assert scheme in line, line
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the one progress bar
def test_progress_bar_rate_and_time_left_come_from_the_work_done(monkeypatch):
    """Slow steps (one per 40 s) still give a rate and an ETA (rich's own estimate showed -:--:--)."""
    import dvsapp.app.commands._common as common

    now = [1000.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: now[0])
    bar = common.ProgressBar("epoch 1/1", unit="steps", rate_unit="clips")
    with bar:
        bar.restart("epoch 1/1", 10)
        now[0] += 40.0
        bar.update(1, 10, rate=0.2, note="loss 2.398  acc 0.090")
        task = bar._progress.tasks[0]
        assert task.fields["rate"] == "0.20 clips/s"  # not "0 clips/s"
        assert task.fields["eta"] == "ETA 0:06:00"  # 9 steps left at 40 s each
        assert task.fields["count"] == "1/10 steps" and task.completed == 1
        now[0] += 40.0
        bar.update(2, 10)  # no rate given: measured, per second
        assert bar._progress.tasks[0].fields["rate"] == "0.03 clips/s"
        assert bar._progress.tasks[0].fields["eta"] == "ETA 0:05:20"
    assert bar._progress is None  # gone when the block ends


def test_progress_bar_stays_silent_when_disabled_or_below_its_threshold():
    from dvsapp.app.commands._common import ProgressBar

    with ProgressBar("x", enabled=False) as off:
        off(10, 100)
        assert off._progress is None
    with ProgressBar("y", start_after=1000) as late:
        late(999, 5000)
        assert late._progress is None
        late(1000, 5000)
        assert late._progress is not None
