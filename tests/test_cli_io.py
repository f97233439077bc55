"""``dvsapp info`` and ``dvsapp convert``: facts, conversions, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dvsapp.app.cli import app
from dvsapp.core.events import SensorSize, random_events
from dvsapp.core.io import open_events, write_events
from tests.test_io_errors import _bad_inputs

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, path, fragment: str = "") -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert str(path) in lines[0], lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


def test_info_table_on_the_bundled_recording():
    result = _run("info", RECORDING)
    assert result.exit_code == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    truth = open_events(RECORDING).read_all()
    assert rows["format"] == "aedat4"
    assert rows["sensor"] == "128x128"
    assert rows["events"] == f"{len(truth):,}"
    duration = int(truth["t"][-1] - truth["t"][0])
    assert f"({duration:,} us)" in rows["duration"]
    assert rows["labels"].endswith("gestures_labels.csv")
    on = int(truth["p"].sum())
    assert f"({on:,})" in rows["polarity"] and f"({len(truth) - on:,})" in rows["polarity"]


def test_info_json_on_generated_file(tmp_path):
    size = SensorSize(100, 80)
    ev = random_events(5000, size, duration_us=2_000_000, t0_us=1_000, seed=3)
    path = write_events(tmp_path / "g.h5", ev, size, metadata={"camera": "gen"})
    result = _run("info", path, "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["format"] == "hdf5" and (facts["width"], facts["height"]) == (100, 80)
    assert facts["camera"] == "gen" and facts["n_events"] == 5000
    assert facts["t_first_us"] == int(ev["t"][0]) and facts["t_last_us"] == int(ev["t"][-1])
    assert facts["duration_us"] == int(ev["t"][-1] - ev["t"][0])
    assert facts["event_rate_hz"] == pytest.approx(5000 / (facts["duration_us"] * 1e-6))
    assert facts["n_on"] == int(ev["p"].sum()) and facts["n_on"] + facts["n_off"] == 5000


def test_info_on_real_files(shared_data):
    result = _run("info", shared_data / "prophesee_evt2_640x480.raw", "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (facts["format"], facts["width"], facts["height"], facts["n_events"]) == (
        "evt2",
        640,
        480,
        521_252,
    )


def test_info_and_convert_on_every_bad_input_exit_2_in_one_line(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, path, _cls, fragment in _bad_inputs(tmp_path):
        _assert_one_line_error(_run("info", path), path, fragment)
        out = out_dir / f"{path.stem}.h5"
        _assert_one_line_error(_run("convert", path, out), path, fragment)
        assert not any(out_dir.iterdir()), f"{name}: convert left {list(out_dir.iterdir())}"


def test_convert_between_all_writable_formats_with_crop_and_downsample(tmp_path):
    size = SensorSize(120, 90)
    ev = random_events(8000, size, duration_us=1_000_000, t0_us=5, seed=4)
    src = write_events(tmp_path / "src.aedat4", ev, size)
    current = src
    for ext in ("h5", "npz", "csv", "hdf5", "aedat4"):
        out = tmp_path / f"via_{ext}.{ext}"
        result = _run("convert", current, out, "--quiet")
        assert result.exit_code == 0, result.stderr
        assert "8,000 events" in result.stdout
        current = out
    np.testing.assert_array_equal(open_events(current).read_all(), ev)

    result = _run("convert", src, tmp_path / "crop.npz", "--crop", "10,20,40,30", "--downsample", "2")
    assert result.exit_code == 0, result.stderr
    r = open_events(tmp_path / "crop.npz")
    assert tuple(r.sensor_size[:2]) == (20, 15)
    keep = (ev["x"] >= 10) & (ev["x"] < 50) & (ev["y"] >= 20) & (ev["y"] < 50)
    want = ev[keep].copy()
    want["x"] = (want["x"] - 10) // 2
    want["y"] = (want["y"] - 20) // 2
    np.testing.assert_array_equal(r.read_all(), want)


def test_convert_refuses_to_overwrite_without_force(tmp_path):
    size = SensorSize(32, 32)
    src = write_events(tmp_path / "a.npz", random_events(300, size, seed=5), size)
    dst = write_events(tmp_path / "b.h5", random_events(10, size, seed=6), size)
    before = dst.read_bytes()
    _assert_one_line_error(_run("convert", src, dst), dst, "--force")
    assert dst.read_bytes() == before
    result = _run("convert", src, dst, "--force")
    assert result.exit_code == 0, result.stderr
    assert len(open_events(dst).read_all()) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.h5"]  # no temp files left


def test_convert_bad_options_and_outputs(tmp_path):
    size = SensorSize(32, 32)
    src = write_events(tmp_path / "a.npz", random_events(300, size, seed=7), size)
    _assert_one_line_error(_run("convert", src, tmp_path / "x.raw"), tmp_path / "x.raw", "cannot write")
    _assert_one_line_error(_run("convert", src, tmp_path / "no" / "x.h5"), tmp_path / "no", "does not exist")
    result = _run("convert", src, tmp_path / "c.h5", "--crop", "20,20,20,20")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not fit the" in result.stderr
    result = _run("convert", src, tmp_path / "c.h5", "--crop", "a,b")
    assert result.exit_code == 2 and "X,Y,WIDTH,HEIGHT" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "corrupt.aedat4"
    bad.write_bytes(b"#!AER-DAT4.0\r\n" + b"\xff\xff\xff\x7f" + b"\x00" * 64)
    for command in ("info", "convert"):
        args = [sys.executable, "-m", "dvsapp.app", command, str(bad)] + (
            [str(tmp_path / "o.h5")] if command == "convert" else []
        )
        proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0] and "header claims" in lines[0], proc.stderr


def test_info_reports_triggers_and_imu_samples(shared_data):
    result = _run("info", shared_data / "prophesee_evt3_640x480_triggers.raw", "--json")
    assert result.exit_code == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (facts["format"], facts["n_events"], facts["n_on"], facts["n_off"]) == (
        "evt3",
        343_474,
        125_183,
        218_291,
    )
    assert (facts["n_triggers"], facts["n_triggers_rising"], facts["n_triggers_falling"]) == (
        4_157,
        2_079,
        2_078,
    )
    assert facts["trigger_channels"] == [6]
    table = _run("info", shared_data / "davis240c_aedat2_rotdisk.aedat")
    rows = dict(line.split(None, 1) for line in table.stdout.splitlines() if line.strip())
    assert rows["events"] == "374,296" and rows["imu"] == "7,384 samples" and rows["triggers"] == "0"
    assert rows["camera"] == "DAVIS240C" and rows["sensor"] == "240x180"
    table = _run("info", shared_data / "davis346_aestream.aedat4")
    rows = dict(line.split(None, 1) for line in table.stdout.splitlines() if line.strip())
    assert rows["triggers"].startswith("15 (7 rising, 8 falling")


def test_convert_keeps_triggers_where_the_target_holds_them(shared_data, tmp_path):
    src = shared_data / "prophesee_evt3_640x480_triggers.raw"
    kept = _run("convert", src, tmp_path / "t.h5")
    assert kept.exit_code == 0, kept.stderr
    assert "4,157 triggers" in kept.stdout and kept.stderr == ""
    assert len(open_events(tmp_path / "t.h5").read_triggers()) == 4_157
    dropped = _run("convert", src, tmp_path / "t.npz")
    assert dropped.exit_code == 0, dropped.stderr
    assert dropped.stderr.strip().splitlines() == [
        "dropped 4,157 triggers: .npz files hold none (.aedat4 and .h5 do)"
    ]
    merged = _run("convert", tmp_path / "t.h5", tmp_path / "t.aedat4")
    assert merged.exit_code == 0, merged.stderr
    assert merged.stderr.strip().splitlines() == [
        "AEDAT 4 has one external-signal input: the triggers of channel 6 are written as it"
    ]
