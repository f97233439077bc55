"""``export_dataset`` / ``read_dataset`` (the HDF5 training dataset) and ``dvsapp label ...`` commands."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from dvsapp.core.errors import LabelError, OutputExistsError
from dvsapp.core.events import SensorSize, concat, random_events, time_slice
from dvsapp.core.labels import (
    DATASET_FORMAT,
    Recording,
    Segment,
    assign_splits,
    dataset_class_names,
    export_dataset,
    labels_path_for,
    read_dataset,
    write_labels_csv,
)

SIZE = SensorSize(32, 24)


def _events(seed: int, duration_us: int = 4_000_000, n: int = 4000):
    return random_events(n, SIZE, duration_us=duration_us, t0_us=100_000, seed=seed)


@pytest.fixture
def recs(tmp_path):
    """Three labelled 'recordings' held in memory, served by a stand-in loader."""
    table = {}
    labels = {
        "user01_led.npz": [Segment(0, 500_000, 1_500_000), Segment(3, 2_000_000, 3_000_000)],
        "user02_led.npz": [Segment(10, 200_000, 900_000)],
        "user24_led.npz": [Segment(1, 1_000_000, 1_800_000), Segment(2, 2_500_000, 4_000_000)],
    }
    paths = []
    for i, (name, segs) in enumerate(labels.items()):
        path = tmp_path / name
        path.write_bytes(b"stand-in")  # the loader below does not read it
        write_labels_csv(labels_path_for(path), segs)
        table[path] = _events(i)
        paths.append(path)

    def loader(path: Path) -> Recording:
        return Recording(Path(path), table[Path(path)], SIZE)

    return paths, labels, table, loader


def test_export_segments_mode(recs, tmp_path):
    paths, labels, table, loader = recs
    out = tmp_path / "ds.h5"
    summary = export_dataset(paths, out, test_patterns=["user24*"], loader=loader)
    assert (summary.n_groups, summary.n_train, summary.n_test) == (5, 3, 2)
    assert summary.test_recordings == (str(paths[2]),)
    with h5py.File(out, "r") as fh:
        assert fh.attrs["format"] == DATASET_FORMAT and fh.attrs["mode"] == "segments"
        assert list(fh.attrs["sensor_size"]) == [32, 24, 2]
        g = fh["recordings/000001"]
        assert g["x"].dtype == np.int16 and g["t"].dtype == np.int64 and g["p"].dtype == np.uint8
        assert g["labels"].dtype == np.int64 and g["labels"].shape == (1, 3)
    items = list(read_dataset(out))
    assert [it.index for it in items] == [0, 1, 2, 3, 4]
    assert dataset_class_names(out)[10] == "other_gestures"
    k = 0
    for path in paths:
        for j, seg in enumerate(labels[path.name]):
            item = items[k]
            k += 1
            assert item.source == str(path) and item.segment_index == j
            assert item.offset_us == seg.start_us
            assert item.segments == (Segment(seg.class_id, 0, seg.duration_us),)
            expect = time_slice(table[path], seg.start_us, seg.end_us)
            assert len(item.events) == len(expect) > 0
            assert np.array_equal(item.events["t"] + item.offset_us, expect["t"])
            assert np.array_equal(item.events["x"], expect["x"])
            assert np.array_equal(item.events["p"], expect["p"])
            assert item.split == ("test" if path.name.startswith("user24") else "train")
            assert item.sensor_size == SIZE
    assert [it.index for it in read_dataset(out, split="test")] == [3, 4]


def test_export_recordings_mode_keeps_whole_streams(recs, tmp_path):
    paths, labels, table, loader = recs
    out = tmp_path / "ds.h5"
    summary = export_dataset(paths, out, mode="recordings", test_fraction=0.34, seed=1, loader=loader)
    assert summary.n_groups == 3 and summary.n_test == 1
    items = list(read_dataset(out))
    for item, path in zip(items, paths):
        assert item.offset_us == 0 and item.segment_index == -1
        assert np.array_equal(item.events, table[path])
        assert list(item.segments) == labels[path.name]
    assert sum(it.split == "test" for it in items) == 1
    assert concat([it.events for it in items]).size == sum(len(v) for v in table.values())


def test_export_refuses_bad_requests(recs, tmp_path):
    paths, _, _, loader = recs
    out = tmp_path / "ds.h5"
    export_dataset(paths[:1], out, loader=loader)
    with pytest.raises(OutputExistsError, match="--force"):
        export_dataset(paths[:1], out, loader=loader)
    export_dataset(paths[:2], out, force=True, loader=loader)
    assert len(list(read_dataset(out))) == 3
    nolabels = tmp_path / "bare.npz"
    nolabels.write_bytes(b"x")
    with pytest.raises(LabelError, match="has no labels"):
        export_dataset([nolabels], tmp_path / "x.h5", loader=loader)
    with pytest.raises(LabelError, match="mode"):
        export_dataset(paths, tmp_path / "y.h5", mode="frames", loader=loader)
    with pytest.raises(LabelError, match="does not exist"):
        export_dataset([tmp_path / "missing.npz"], tmp_path / "z.h5", loader=loader)
    assert not (tmp_path / "x.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # failed exports leave nothing
    with pytest.raises(LabelError, match="not a dvsapp-label-dataset"):
        with h5py.File(tmp_path / "other.h5", "w") as fh:
            fh.attrs["format"] = "something else"
        list(read_dataset(tmp_path / "other.h5"))


def test_export_uses_the_project_class_list(recs, tmp_path):
    paths, _, _, loader = recs
    from dvsapp.core.labels import LabelDocument

    doc = LabelDocument.open(paths[0])
    doc.set_class_names([*doc.class_names, "thumbs_up"])
    doc.save()
    out = tmp_path / "ds.h5"
    export_dataset(paths, out, loader=loader)
    assert dataset_class_names(out)[-1] == "thumbs_up"
    with h5py.File(out, "r") as fh:
        assert json.loads(fh.attrs["class_names"])[-1] == "thumbs_up"


def test_assign_splits():
    names = [f"user{i:02d}_led.aedat" for i in range(1, 11)]
    assert assign_splits(names) == ["train"] * 10
    s = assign_splits(names, test_fraction=0.3)
    assert s.count("test") == 3 and s == assign_splits(names, test_fraction=0.3)
    assert len({tuple(assign_splits(names, test_fraction=0.3, seed=k)) for k in range(5)}) > 1  # seeded draw
    assert assign_splits(names, test_patterns=["user01*", "user1*"]) == ["test"] + ["train"] * 8 + ["test"]
    assert assign_splits(names[:1], test_fraction=0.5) == ["train"]
    assert assign_splits(names[:2], test_fraction=0.1).count("test") == 1
    with pytest.raises(LabelError):
        assign_splits(names, test_fraction=1.0)


# ----------------------------------------------------------------- CLI (needs core.io for real files)


def _have_io() -> bool:
    try:
        from dvsapp.core.io import open_events, write_events  # noqa: F401
    except ImportError:
        return False
    return True


needs_io = pytest.mark.skipif(
    not _have_io(), reason="dvsapp.core.io (open_events / write_events) is not available"
)


@pytest.fixture
def cli():
    from dvsapp.app.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def _write_rec(path: Path, events, size=SIZE) -> Path:
    from dvsapp.core.io import write_events

    write_events(path, events, size)
    return path


def test_cli_show_and_validate_csv(cli, tmp_path):
    good = tmp_path / "a_labels.csv"
    write_labels_csv(good, [Segment(0, 0, 1_000_000), Segment(10, 1_500_000, 2_000_000)])
    res = cli("label", "show", good)
    assert res.exit_code == 0, res.output
    assert "2 segment(s)" in res.output and "other_gestures" in res.output and "1500000" in res.output
    res = cli("label", "validate", good)
    assert res.exit_code == 0 and "ok" in res.output
    bad = tmp_path / "b_labels.csv"
    bad.write_text("class,startTime_usec,endTime_usec\n1,0,100\n2,50,150\n12,200,300\nxx\n")
    res = cli("label", "validate", good, bad)
    assert res.exit_code == 1
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert f"{bad}: line 3:" in err and "overlaps" in err
    assert f"{bad}: line 4:" in err and "unknown" in err
    assert f"{bad}: line 5:" in err
    assert "1 of 2 file(s)" in err
    assert cli("label", "validate", "--allow-overlap", bad).exit_code == 1  # still unknown class


def test_cli_malformed_csv_is_one_line_error(cli, tmp_path):
    bad = tmp_path / "c_labels.csv"
    bad.write_text("class,startTime_usec,endTime_usec\n1,0,100\n1,zz,5\n")
    res = cli("label", "show", bad)
    assert res.exit_code == 2
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "line 3" in lines[0] and str(bad) in lines[0]
    res = cli("label", "show", tmp_path / "nothing.csv")
    assert res.exit_code == 2


@needs_io
def test_cli_validate_checks_recording_range(cli, tmp_path):
    rec = _write_rec(tmp_path / "r.npz", _events(1))  # events 100 ms .. 4.1 s
    write_labels_csv(labels_path_for(rec), [Segment(0, 200_000, 900_000), Segment(1, 3_000_000, 9_000_000)])
    res = cli("label", "validate", rec)
    assert res.exit_code == 1
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "line 3" in err and "outside the recording" in err
    assert cli("label", "validate", "--no-range", rec).exit_code == 0
    # the CSV names its recording by its stem: range is checked from the CSV too
    assert cli("label", "validate", labels_path_for(rec)).exit_code == 1


@needs_io
def test_cli_export_and_h5_recording_labels(cli, tmp_path):
    a = _write_rec(tmp_path / "user01_a.npz", _events(1))
    b = _write_rec(tmp_path / "user30_b.npz", _events(2))
    write_labels_csv(labels_path_for(a), [Segment(0, 500_000, 1_500_000)])
    write_labels_csv(labels_path_for(b), [Segment(4, 500_000, 1_000_000), Segment(5, 2_000_000, 3_000_000)])
    out = tmp_path / "dataset.h5"
    res = cli("label", "export", a, b, "--out", out, "--test", "user30*")
    assert res.exit_code == 0, res.output
    assert "3 segments (1 train, 2 test)" in res.output
    items = list(read_dataset(out))
    assert [it.split for it in items] == ["train", "test", "test"]
    assert cli("label", "export", a, "--out", out).exit_code == 2  # exists
    res = cli("label", "show", a)
    assert res.exit_code == 0 and "hand_clapping" in res.output


@needs_io
def test_cli_suggest_writes_an_editable_csv(cli, tmp_path):
    rng = np.random.default_rng(0)
    quiet = random_events(200, SIZE, duration_us=6_000_000, seed=rng)
    burst = random_events(20_000, SIZE, duration_us=1_500_000, t0_us=2_000_000, seed=rng)
    ev = np.concatenate([quiet, burst])
    ev = ev[np.argsort(ev["t"], kind="stable")]
    rec = _write_rec(tmp_path / "s.npz", ev)
    res = cli("label", "suggest", rec, "--write")
    assert res.exit_code == 0, res.output
    segs = __import__("dvsapp.core.labels").core.labels.read_labels_csv(labels_path_for(rec))
    assert len(segs) == 1 and abs(segs[0].start_us - 2_000_000) < 200_000
    assert cli("label", "suggest", rec, "--write").exit_code == 2  # refuses to overwrite


# ----------------------------------------------------------------- training smoke


def _train_supports_h5() -> str | None:
    if importlib.util.find_spec("dvsapp.app.commands.train_cmds") is None:
        return "app/commands/train_cmds.py does not exist"
    try:
        from dvsapp.core.train.datasets import DATASETS
    except ImportError as exc:
        return f"dvsapp.core.train.datasets cannot be imported ({exc})"
    if "h5" not in DATASETS:
        return "dvsapp.core.train.datasets has no 'h5' loader for exported label datasets yet"
    return None


@needs_io
@pytest.mark.slow
def test_exported_dataset_trains(cli, tmp_path):
    reason = _train_supports_h5()
    if reason:
        pytest.skip(reason)
    size = SensorSize(128, 128)
    paths = []
    for i in range(3):
        ev = random_events(30_000, size, duration_us=3_000_000, seed=i)
        p = _write_rec(tmp_path / f"user{i + 1:02d}_x.npz", ev, size)
        write_labels_csv(
            labels_path_for(p), [Segment(i, 100_000, 1_400_000), Segment(i + 3, 1_500_000, 2_900_000)]
        )
        paths.append(p)
    out = tmp_path / "ds.h5"
    assert cli("label", "export", *paths, "--out", out, "--test", "user03*").exit_code == 0
    res = cli(
        "train",
        "--dataset",
        "h5",
        "--root",
        out,
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch",
        "2",
        "--clips-per-epoch",
        "4",
        "--device",
        "cpu",
        "--out",
        tmp_path / "run",
        "--quiet",
        "--no-test",
    )
    assert res.exit_code == 0, res.output
    assert any((tmp_path / "run").rglob("*.safetensors"))


@needs_io
def test_h5_recording_with_labels_inside(cli, tmp_path):
    from dvsapp.core.io import write_events
    from dvsapp.core.labels import LabelDocument, find_labels

    rec = tmp_path / "inside.h5"
    segs = [Segment(2, 300_000, 800_000), Segment(7, 1_000_000, 2_000_000)]
    write_events(rec, _events(4), SIZE, metadata={"labels": segs})
    assert find_labels(rec) == segs
    res = cli("label", "show", rec)
    assert res.exit_code == 0 and "2 segment(s)" in res.output and "arm_roll" in res.output
    assert cli("label", "validate", rec).exit_code == 0
    doc = LabelDocument.open(rec)
    assert doc.segments == tuple(segs)
    doc.delete(0)
    doc.save()  # saves the CSV beside it, which then takes precedence
    assert find_labels(rec) == segs[1:]
    out = tmp_path / "ds.h5"
    assert cli("label", "export", rec, "--out", out, "--mode", "recordings").exit_code == 0
    (item,) = read_dataset(out)
    assert item.segments == (segs[1],)


@needs_io
def test_cli_edit_on_a_bad_file_is_one_line_error(cli, tmp_path):
    bad = tmp_path / "broken.aedat4"
    bad.write_bytes(b"not an event file at all")
    res = cli("label", "edit", bad)
    assert res.exit_code == 2
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1 and str(bad) in err


@needs_io
def test_cli_folders_and_test_list(cli, tmp_path):
    data = tmp_path / "DvsGesture"
    data.mkdir()
    for name in ("user01_led", "user02_led", "user24_led"):
        rec = _write_rec(data / f"{name}.npz", _events(len(name)))
        write_labels_csv(labels_path_for(rec), [Segment(1, 200_000, 900_000)])
    _write_rec(data / "unlabelled.npz", _events(9))  # skipped: no labels
    (data / "trials_to_test.txt").write_text("user24_led.npz\n\n")
    out = tmp_path / "ds.h5"
    res = cli("label", "export", data, "--out", out, "--test-list", data / "trials_to_test.txt")
    assert res.exit_code == 0, res.output
    items = list(read_dataset(out))
    assert [Path(it.source).name for it in items] == ["user01_led.npz", "user02_led.npz", "user24_led.npz"]
    assert [it.split for it in items] == ["train", "train", "test"]
    res = cli("label", "validate", data)
    assert res.exit_code == 0 and res.output.count(": ok") == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("label", "export", empty, "--out", tmp_path / "e.h5").exit_code == 2
    assert cli("label", "validate", empty).exit_code == 2


@needs_io
def test_cli_export_to_an_unwritable_place_fails_first_in_one_line(cli, tmp_path):
    rec = _write_rec(tmp_path / "user01_a.npz", _events(1))
    write_labels_csv(labels_path_for(rec), [Segment(0, 500_000, 1_500_000)])
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    out = blocker / "ds.h5"
    before = sorted(p.name for p in tmp_path.iterdir())
    res = cli("label", "export", rec, "--out", out)
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "not a folder" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
    res = cli("label", "export", rec, "--out", tmp_path / "missing" / "ds.h5")
    assert res.exit_code == 2 and "does not exist" in res.stderr and len(res.stderr.strip().splitlines()) == 1
