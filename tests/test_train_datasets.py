"""Training datasets in their real on-disk layouts, built tiny in ``tmp_path``.

- DVS128 Gesture as IBM distributes it (``DvsGesture.tar.gz`` unpacked):
  ``userNN_<lighting>.aedat`` in AEDAT 3.1, written here byte by byte from the
  format description, ``userNN_<lighting>_labels.csv`` and the official
  ``trials_to_train.txt`` / ``trials_to_test.txt``.
- tonic's preprocessed DVSGesture: ``ibmGestureTrain|Test/userNN_<lighting>/<class>.npy``
  (``[N, 4]`` int64 ``x, y, p, t_ms``), read through ``tonic.datasets.DVSGesture``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from dvsapp.core.errors import ConfigError, EventFileError, LabelError
from dvsapp.core.events import EVENT_DTYPE
from dvsapp.core.recipe import InputRecipe
from dvsapp.core.train.datasets import (
    DVS128,
    NO_LABEL,
    Augment,
    ClipBank,
    Span,
    apply_augment,
    build_frames,
    dvsgesture_recordings,
    load_recordings,
    step_labels,
    synthetic_seeds,
    tonic_recordings,
)

# --------------------------------------------------------------------------- DVS128 Gesture (AEDAT 3.1)

HEADER_31 = (
    b"#!AER-DAT3.1\r\n"
    b"#Format: RAW\r\n"
    b"#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-02-01 10:20:30 (TZ-0500)\r\n"
    b"#!END-HEADER\r\n"
)


def _packet(etype: int, body: bytes, n: int, *, size: int = 8, overflow: int = 0) -> bytes:
    """28-byte packet header (eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid), then the events."""
    return struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, n, n, n) + body


def _polarity_body(ev: np.ndarray) -> bytes:
    out = bytearray()
    for e in ev:
        data = (int(e["x"]) << 17) | (int(e["y"]) << 2) | (int(e["p"]) << 1) | 1  # bit 0: valid
        out += struct.pack("<Ii", data, int(e["t"]) & 0x7FFFFFFF)
    return bytes(out)


def write_aedat31(path: Path, ev: np.ndarray, per_packet: int = 50) -> None:
    """Polarity packets of ``per_packet`` events, a special-event packet after the first one."""
    with open(path, "wb") as fh:
        fh.write(HEADER_31)
        for k, i0 in enumerate(range(0, len(ev), per_packet)):
            chunk = ev[i0 : i0 + per_packet]
            fh.write(_packet(1, _polarity_body(chunk), len(chunk), overflow=int(chunk["t"][0]) >> 31))
            if k == 0:
                fh.write(_packet(0, struct.pack("<Ii", (2 << 1) | 1, int(chunk["t"][-1]) & 0x7FFFFFFF), 1))


def gesture_events(rng, spans: list[tuple[int, int, int]], t_start: int, t_end: int) -> np.ndarray:
    """Sparse background events over ``[t_start, t_end)`` plus a dense burst inside every span."""
    parts = [np.sort(rng.integers(t_start, t_end, 60))]
    for _, s, e in spans:
        parts.append(np.sort(rng.integers(s, e, 240)))
    t = np.sort(np.concatenate(parts))
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = rng.integers(0, 128, len(t))
    ev["y"] = rng.integers(0, 128, len(t))
    ev["p"] = rng.integers(0, 2, len(t)).astype(bool)
    return ev


#: (file stem, [(1-based class, start_us, end_us)], first and last event time), real-like timestamps
TRIALS = {
    "user01_fluorescent": (
        [(1, 80_048_239, 80_648_239), (4, 80_900_000, 81_500_000)],
        79_900_000,
        81_700_000,
    ),
    "user02_lab": ([(11, 3_100_000, 3_700_000), (2, 3_800_000, 4_400_000)], 3_000_000, 4_500_000),
    "user24_led": ([(7, 12_000_000, 12_600_000)], 11_950_000, 12_700_000),
}


@pytest.fixture
def dvsgesture_root(tmp_path, rng) -> tuple[Path, dict[str, np.ndarray]]:
    """``tmp_path/DvsGesture`` in the layout of the original release; returns (parent, events per stem)."""
    base = tmp_path / "DvsGesture"
    base.mkdir()
    written = {}
    for stem, (spans, t0, t1) in TRIALS.items():
        ev = gesture_events(rng, spans, t0, t1)
        write_aedat31(base / f"{stem}.aedat", ev)
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{s},{e}" for c, s, e in spans]
        newline = "\r\n" if stem.startswith("user02") else "\n"  # both line endings occur in the wild
        (base / f"{stem}_labels.csv").write_bytes((newline.join(lines) + newline).encode())
        written[stem] = ev
    (base / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_lab.aedat\n\n")
    (base / "trials_to_test.txt").write_text("user24_led.aedat\n")
    (base / "README.txt").write_text("DVS128 Gesture dataset (fake, for tests)\n")
    return tmp_path, written


def test_dvsgesture_original_release_loads_clips_classes_and_user_split(dvsgesture_root):
    parent, written = dvsgesture_root
    train = dvsgesture_recordings(parent, "train")  # the parent of DvsGesture/ is accepted too
    test = dvsgesture_recordings(parent / "DvsGesture", "test")
    assert [r.name for r in train] == ["user01_fluorescent", "user02_lab"]
    assert [r.name for r in test] == ["user24_led"]
    assert [r.user for r in train] == ["user01", "user02"] and test[0].user == "user24"
    assert {r.user for r in train}.isdisjoint(r.user for r in test)  # the split is by user
    for rec in train + test:
        spans, _, _ = TRIALS[rec.name]
        assert rec.sensor_size == DVS128
        assert rec.spans == tuple(Span(c - 1, s, e) for c, s, e in spans)  # CSV classes are 1-based
        ev = rec.events()
        exp = written[rec.name]
        for f in ("x", "y", "p", "t"):
            np.testing.assert_array_equal(ev[f], exp[f], err_msg=f"{rec.name}.{f}")
    assert [r.name for r in dvsgesture_recordings(parent, "all")] == list(TRIALS)


def test_dvsgesture_validation_is_held_out_training_users_never_the_test_users(dvsgesture_root, rng):
    parent, _ = dvsgesture_root
    base = parent / "DvsGesture"
    write_aedat31(
        base / "user22_natural.aedat", gesture_events(rng, [(5, 1_000_000, 1_600_000)], 900_000, 1_700_000)
    )
    (base / "user22_natural_labels.csv").write_text("class,startTime_usec,endTime_usec\n5,1000000,1600000\n")
    with open(base / "trials_to_train.txt", "a") as fh:
        fh.write("user22_natural.aedat\n")
    train = dvsgesture_recordings(parent, "train")
    val = dvsgesture_recordings(parent, "val")
    test = dvsgesture_recordings(parent, "test")
    assert [r.name for r in val] == ["user22_natural"]
    assert [r.name for r in train] == ["user01_fluorescent", "user02_lab"]
    users = [{r.user for r in split} for split in (train, val, test)]
    assert users[0].isdisjoint(users[1]) and users[1].isdisjoint(users[2]) and users[0].isdisjoint(users[2])


def test_dvsgesture_frames_are_labeled_by_the_csv_segments(dvsgesture_root):
    parent, written = dvsgesture_root
    pre = InputRecipe((64, 64, 2), 10_000, 8)
    frames = build_frames("dvsgesture", parent, "train", pre)
    assert [f.name for f in frames] == ["user01_fluorescent", "user02_lab"]
    f = frames[0]
    spans, t_first, t_last = TRIALS[f.name]
    assert f.t0_us == (written[f.name]["t"][0] // 10_000) * 10_000
    assert f.frames.shape[1:] == (2, 64, 64)
    assert int(f.frames.sum(dtype=np.int64)) == len(written[f.name])  # every event counted once
    mid = f.t0_us + np.arange(f.n_steps) * 10_000 + 5_000
    for cls, s, e in spans:
        inside = (mid >= s) & (mid < e)
        assert inside.sum() == 60 and (f.labels[inside] == cls - 1).all()
    assert (f.labels == NO_LABEL).sum() == f.n_steps - 120
    # clips are drawn so that every clip overlaps a gesture
    bank = ClipBank(frames, 16)
    x, y = bank.gather(bank.epoch_starts(64, seed=0, epoch=0))
    assert x.shape == (64, 16, 2, 64, 64) and y.shape == (64, 16)
    assert bool(((y >= 0).sum(dim=1) > 0).all())
    assert set(y[y >= 0].unique().tolist()) <= {0, 3, 10, 1}


def test_dvsgesture_bad_folders_give_one_line_errors(dvsgesture_root, tmp_path):
    parent, _ = dvsgesture_root
    base = parent / "DvsGesture"
    with pytest.raises(EventFileError, match="not a DVS128 Gesture folder") as exc:
        dvsgesture_recordings(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(exc.value)
    with pytest.raises(ConfigError, match="unknown split"):
        dvsgesture_recordings(parent, "dev")
    (base / "user24_led_labels.csv").unlink()
    with pytest.raises(LabelError, match="user24_led_labels.csv") as exc:
        dvsgesture_recordings(parent, "test")
    assert "user24_led.aedat" in str(exc.value)
    (base / "user02_lab.aedat").unlink()
    with pytest.raises(EventFileError, match="missing: user02_lab.aedat"):
        dvsgesture_recordings(parent, "train")
    (base / "user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,5,9\n")
    with pytest.raises(LabelError, match="user01_fluorescent_labels.csv"):
        dvsgesture_recordings(parent, "train")


def test_train_cli_on_a_bad_dvsgesture_root_exits_2_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from dvsapp.app.cli import app

    args = [
        "train",
        "--dataset",
        "dvsgesture",
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path) in lines[0] and "DVS128 Gesture" in lines[0]


# --------------------------------------------------------------------------- tonic's DVSGesture layout

#: split folder -> {user folder: [class ids]}; tonic names each file by its 0-based class
TONIC = {
    "ibmGestureTrain": {"user01_fluorescent": [0, 3, 10], "user02_natural": [5]},
    "ibmGestureTest": {"user24_led": [2, 6]},
}


@pytest.fixture
def tonic_root(tmp_path, rng) -> tuple[Path, dict[str, np.ndarray]]:
    """``tmp_path/DVSGesture`` as tonic unpacks it; returns (root given to tonic, arrays by name)."""
    arrays = {}
    for split, users in TONIC.items():
        for user, classes in users.items():
            folder = tmp_path / "DVSGesture" / split / user
            folder.mkdir(parents=True)
            for c in classes:
                n = 150 + 10 * c
                t_ms = np.sort(rng.integers(1000 * c, 1000 * c + 1500, n))
                arr = np.stack(
                    [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t_ms], axis=1
                ).astype(np.int64)
                np.save(folder / f"{c}.npy", arr)
                arrays[f"{user}/{c}"] = arr
    return tmp_path, arrays


def test_tonic_layout_gives_one_clip_per_file_with_its_class_and_user(tonic_root):
    root, arrays = tonic_root
    train = tonic_recordings(root, "train")
    test = load_recordings("tonic-dvsgesture", root, "test")
    assert sorted(r.name for r in train) == sorted(
        f"{u}/{c}" for u, cs in TONIC["ibmGestureTrain"].items() for c in cs
    )
    assert sorted(r.name for r in test) == ["user24_led/2", "user24_led/6"]
    assert {r.user for r in train} == {"user01", "user02"} and {r.user for r in test} == {"user24"}
    for rec in train + test:
        arr = arrays[rec.name]
        cls = int(rec.name.split("/")[1])
        assert rec.spans == (Span(cls, int(arr[0, 3]) * 1000, int(arr[-1, 3]) * 1000 + 1000),)
        ev = rec.events()
        np.testing.assert_array_equal(ev["t"], arr[:, 3] * 1000)  # ms -> us
        np.testing.assert_array_equal(ev["x"], arr[:, 0])
        np.testing.assert_array_equal(ev["y"], arr[:, 1])
        np.testing.assert_array_equal(ev["p"], arr[:, 2].astype(bool))
    # the binned clip is labeled with its class throughout the span and counts every event
    pre = InputRecipe((32, 32, 2), 20_000, 4)
    frames = build_frames("tonic-dvsgesture", root, "test", pre)
    for f in frames:
        cls = int(f.name.split("/")[1])
        assert set(np.unique(f.labels).tolist()) <= {cls, NO_LABEL} and (f.labels == cls).sum() >= 70
        assert int(f.frames.sum(dtype=np.int64)) == len(arrays[f.name])


def test_tonic_layout_missing_split_folder_is_a_one_line_error(tonic_root, tmp_path):
    root, _ = tonic_root
    with pytest.raises(EventFileError, match="no ibmGestureTrain folder") as exc:
        tonic_recordings(tmp_path / "DVSGesture" / "ibmGestureTest")
    assert "ibmGestureTest" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown split"):
        tonic_recordings(root, "all-of-it")


# --------------------------------------------------------------------------- registry, labels, augmentation


def test_registry_rejects_unknown_datasets_and_missing_roots():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        load_recordings("mnist")
    for name in ("dvsgesture", "tonic-dvsgesture", "h5", "recordings"):
        with pytest.raises(ConfigError, match="--root"):
            load_recordings(name, None, "train")
    with pytest.raises(ConfigError, match="unknown split"):
        synthetic_seeds("holdout")
    train, val, test = (set(synthetic_seeds(s)) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)


def test_step_labels_use_the_timestep_midpoint():
    labels = step_labels([Span(2, 1_000, 25_000), Span(4, 30_000, 41_000)], 0, 10_000, 5)
    # midpoints 5, 15, 25, 35, 45 ms
    assert labels.tolist() == [2, 2, NO_LABEL, 4, NO_LABEL]


def test_flip_augmentation_mirrors_frames_and_swaps_left_right_classes():
    import torch

    frames = torch.zeros(2, 3, 2, 4, 4)
    frames[:, :, :, :, 0] = 1.0  # everything in the left column
    labels = torch.tensor([[1, 2, -1], [3, 5, 0]])
    out, lab = apply_augment(frames, labels, Augment(flip_p=1.0))
    assert float(out[..., -1].sum()) == float(frames.sum()) and float(out[..., 0].sum()) == 0.0
    # right wave <-> left wave, right arm cw <-> left arm ccw ...; clapping and "no label" stay
    assert lab.tolist() == [[2, 1, -1], [6, 4, 0]]
    kept, _ = apply_augment(
        frames * 50, labels, Augment(drop_p=0.5), generator=torch.Generator().manual_seed(0)
    )
    assert 0.4 < float(kept.sum()) / float(frames.sum() * 50) < 0.6
