"""Synthetic gesture scenes, the endless stream, `dvsapp simulate` and the bundled recordings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import RECORDINGS

from dvsapp.core.errors import ConfigError, OutputExistsError
from dvsapp.core.events import EVENT_DTYPE, SensorSize, validate
from dvsapp.core.gestures import GESTURE_CLASSES, mirrored_class
from dvsapp.core.synth import (
    MOTIONS,
    REST,
    GestureStream,
    _class_order,
    joint_positions,
    make_sequence,
    pose_at,
    random_motion,
    random_scene,
    render_gesture,
)

SHORT_US = 400_000


@pytest.mark.parametrize("class_id", range(len(GESTURE_CLASSES)))
def test_every_class_renders_valid_events(class_id):
    ev = render_gesture(class_id, 7, duration_us=SHORT_US)
    assert ev.dtype == EVENT_DTYPE
    validate(ev, (128, 128))
    assert len(ev) > 200
    assert ev["t"].min() >= 0 and ev["t"].max() < SHORT_US
    assert ev["p"].any() and (~ev["p"]).any()


def test_render_is_deterministic_per_seed_and_varies_between_seeds():
    a = render_gesture(3, 11, duration_us=200_000)
    assert np.array_equal(a, render_gesture(3, 11, duration_us=200_000))
    assert not np.array_equal(a, render_gesture(3, 12, duration_us=200_000))


def test_other_sensor_sizes_keep_events_inside():
    ev = render_gesture(0, 2, duration_us=200_000, sensor_size=SensorSize(96, 64), equalise=False)
    validate(ev, (96, 64))
    assert len(ev) > 100 and ev["x"].max() > 60  # the scene fills the wider sensor


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError):
        render_gesture(11, 0)
    with pytest.raises(ConfigError):
        render_gesture(0, 0, duration_us=0)
    with pytest.raises(ConfigError):
        make_sequence(0, 0)
    with pytest.raises(ConfigError):
        GestureStream(0, chunk_us=0)


def _hand_paths(class_id: int, seed: int):
    rng = np.random.default_rng(seed)
    scene = random_scene(rng)
    motion = random_motion(class_id, rng)
    t = np.linspace(0, 3.0, 1500)
    joints = joint_positions(scene.figure, pose_at(scene, motion, t))
    return scene, joints


def _signed_area(path: np.ndarray) -> float:
    """Shoelace sum in image coordinates (y down): > 0 for a visually clockwise path."""
    x, y = path[:, 0], path[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _travel(path: np.ndarray) -> float:
    return float(np.sum(np.hypot(*np.diff(path, axis=0).T)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arm_circles_turn_the_documented_way_with_the_documented_arm(seed):
    # subject-view clockwise is counter-clockwise in the image (negative signed area)
    expect = {3: ("r", -1), 4: ("r", 1), 5: ("l", -1), 6: ("l", 1)}
    for class_id, (arm, sense) in expect.items():
        _, joints = _hand_paths(class_id, seed)
        other = "l" if arm == "r" else "r"
        hand = joints[f"{arm}_hand"]
        assert np.sign(_signed_area(hand)) == sense, GESTURE_CLASSES[class_id]
        assert _travel(hand) > 5 * _travel(joints[f"{other}_hand"])
        # the subject's right arm is on the image's left
        assert (hand[:, 0].mean() < joints["neck"][:, 0].mean()) == (arm == "r")


@pytest.mark.parametrize("class_id", [1, 3, 4])
def test_mirror_classes_are_mirror_motions(class_id):
    rng = np.random.default_rng(5)
    scene = random_scene(rng)
    motion = random_motion(class_id, rng)
    t = np.linspace(0, 2.0, 400)
    fig = scene.figure
    a = MOTIONS[class_id](motion, fig, t)
    b = MOTIONS[mirrored_class(class_id)](motion, fig, t)
    # outward coordinates: the mirrored class moves the other arm the same way
    assert np.allclose(a[0], b[2]) and np.allclose(a[1], b[3])


def test_waves_move_only_the_forearm_of_one_arm():
    for class_id, arm in ((1, "r"), (2, "l")):
        _, joints = _hand_paths(class_id, 4)
        other = "l" if arm == "r" else "r"
        assert _travel(joints[f"{arm}_hand"]) > 3 * _travel(joints[f"{arm}_elbow"])
        assert _travel(joints[f"{arm}_hand"]) > 5 * _travel(joints[f"{other}_hand"])


def test_clapping_hands_meet_in_the_middle():
    scene, joints = _hand_paths(0, 3)
    gap = np.hypot(*(joints["r_hand"] - joints["l_hand"]).T)
    assert gap.min() < 2.5 * scene.figure.hand_radius
    assert gap.max() > gap.min() + 10


def test_event_rate_alone_does_not_separate_the_classes():
    """A 1-D nearest-class-mean classifier on log event rate must stay near chance."""
    n_seeds = 8
    rates = np.array(
        [[len(render_gesture(c, 500 + s, duration_us=300_000)) for s in range(n_seeds)] for c in range(11)],
        dtype=np.float64,
    )
    log_rate = np.log(rates + 1)
    correct = 0
    for hold in range(n_seeds):  # leave one seed out
        train = np.delete(log_rate, hold, axis=1)
        means = train.mean(axis=1)
        pred = np.abs(log_rate[:, hold, None] - means[None, :]).argmin(axis=1)
        correct += int(np.sum(pred == np.arange(11)))
    accuracy = correct / (11 * n_seeds)
    assert accuracy < 0.4, accuracy


def test_sequence_segments_match_the_activity():
    ev, segments = make_sequence(
        4, 3, classes=[0, 3, 8], gesture_us=(600_000, 700_000), gap_us=(400_000, 500_000)
    )
    validate(ev, (128, 128))
    assert [s.class_id for s in segments] == [0, 3, 8]
    assert all(a.end_us < b.start_us for a, b in zip(segments, segments[1:]))
    assert segments[0].start_us >= 400_000 and ev["t"].max() >= segments[-1].end_us
    t = ev["t"]
    inside = sum(int(np.sum((t >= s.start_us + 150_000) & (t < s.end_us - 150_000))) for s in segments)
    inside_us = sum(s.end_us - s.start_us - 300_000 for s in segments)
    outside = int(np.sum(t < segments[0].start_us - 50_000))
    outside_us = segments[0].start_us - 50_000
    assert inside / inside_us > 3 * outside / outside_us  # moving arms give far more events than rest


def test_class_order_shows_every_class_in_each_round():
    order = _class_order(np.random.default_rng(0), 25)
    assert sorted(order[:11]) == list(range(11)) and sorted(order[11:22]) == list(range(11))


def test_gesture_stream_is_contiguous_and_chunking_does_not_change_it():
    def collect(chunk_us: int, total_us: int):
        stream = GestureStream(3, chunk_us=chunk_us, gesture_us=(300_000, 400_000), gap_us=(100_000, 150_000))
        parts, last_until, labels = [], 0, []
        for events, until_us, class_id in stream:
            assert until_us == last_until + chunk_us
            if len(events):
                assert events["t"][0] >= last_until and events["t"][-1] < until_us
            parts.append(events)
            labels.append((until_us, class_id))
            last_until = until_us
            if until_us >= total_us:
                break
        return np.concatenate(parts), labels, stream

    a, labels, stream = collect(10_000, 1_200_000)
    b, _, _ = collect(30_000, 1_200_000)
    validate(a, (128, 128))
    assert len(a) > 1000
    assert np.array_equal(a, b[b["t"] < 1_200_000])
    seg = stream.segments
    assert len(seg) >= 2 and 0 <= seg[0].class_id < 11
    for until_us, class_id in labels:
        expect = next((s.class_id for s in seg if s.start_us <= until_us - 1 < s.end_us), REST)
        assert class_id == expect


def test_simulate_gestures_command_writes_events_and_labels(tmp_path):
    pytest.importorskip("dvsapp.core.io")
    from typer.testing import CliRunner

    from dvsapp.app.cli import app
    from dvsapp.core.io import open_events
    from dvsapp.core.labels import read_labels_csv

    out = tmp_path / "g.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--gestures", "1", "--seed", "2", "--quiet", str(out)])
    assert result.exit_code == 0, result.output
    reader = open_events(out)
    assert tuple(reader.sensor_size)[:2] == (128, 128)
    ev = reader.read_all()
    segs = read_labels_csv(tmp_path / "g_labels.csv")
    assert len(segs) == 1 and len(ev) > 1000
    again = runner.invoke(app, ["simulate", "--gestures", "1", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    bad = runner.invoke(app, ["simulate", str(out)])
    assert bad.exit_code == 2


def test_simulate_video_command(tmp_path):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("dvsapp.core.io")
    from typer.testing import CliRunner

    from dvsapp.app.cli import app
    from dvsapp.core.io import open_events

    video = tmp_path / "bar.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (40, 30))
    if not writer.isOpened():
        pytest.skip("no MJPG encoder")
    for i in range(12):
        img = np.full((30, 40, 3), 50, np.uint8)
        cv2.rectangle(img, (2 + 2 * i, 5), (8 + 2 * i, 25), (220, 220, 220), -1)
        writer.write(img)
    writer.release()
    out = tmp_path / "bar.csv"
    result = CliRunner().invoke(app, ["simulate", str(video), str(out), "-q", "--noise-hz", "1"])
    assert result.exit_code == 0, result.output
    ev = open_events(out).read_all()
    validate(ev, (40, 30))
    assert len(ev) > 50 and ev["t"].max() <= math.ceil(11 * 1e6 / 30)


def test_write_gesture_sequence_refuses_to_overwrite(tmp_path):
    pytest.importorskip("dvsapp.core.io")
    from dvsapp.core.synth import write_gesture_sequence

    out = tmp_path / "x.npz"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        write_gesture_sequence(out, 1)
    assert out.read_bytes() == b"keep"


@pytest.mark.skipif(not (RECORDINGS / "gestures.aedat4").is_file(), reason="recordings not generated")
def test_bundled_recordings_are_small_labelled_and_readable():
    pytest.importorskip("dvsapp.core.io")
    from dvsapp.core.io import open_events
    from dvsapp.core.labels import find_labels, read_labels_csv

    aedat = RECORDINGS / "gestures.aedat4"
    h5 = RECORDINGS / "gestures.h5"
    total = sum(p.stat().st_size for p in RECORDINGS.iterdir() if p.is_file())
    assert total < 6_000_000
    segs = read_labels_csv(RECORDINGS / "gestures_labels.csv")
    assert sorted({s.class_id for s in segs}) == list(range(11))
    reader = open_events(aedat)
    assert tuple(reader.sensor_size)[:2] == (128, 128)
    ev = reader.read_all()
    validate(ev, (128, 128))
    assert 15e6 < ev["t"][-1] - ev["t"][0] < 30e6
    assert segs[-1].end_us <= ev["t"][-1] + 1_000_000
    short = open_events(h5).read_all()
    assert 3e6 < short["t"][-1] - short["t"][0] < 8e6
    assert find_labels(h5)


def test_rate_controller_caps_the_rate_and_leaves_slow_streams_alone():
    from dvsapp.core.events import random_events
    from dvsapp.core.synth import RateController

    ctl = RateController(0, time_constant_us=50_000)
    kept = 0
    for i in range(100):  # 1 s at 50 kev/s in 10 ms packets, target 10 kev/s
        ev = random_events(500, duration_us=10_000, t0_us=i * 10_000, seed=i)
        out = ctl.apply(ev, 10_000, 10_000.0)
        assert np.all(np.isin(out["t"], ev["t"])) and np.all(np.diff(out["t"]) >= 0)
        kept += len(out) if i >= 10 else 0
    assert abs(kept / 0.9 - 10_000) < 800
    slow = RateController(0)
    ev = random_events(50, duration_us=10_000, seed=1)
    assert slow.apply(ev, 10_000, 10_000.0) is ev
    assert RateController(0).apply(ev, 10_000, 0.0) is ev  # no target: keep everything


@pytest.mark.parametrize("class_id", range(len(GESTURE_CLASSES)))
def test_joints_move_smoothly(class_id):
    """No joint jumps between 2 ms frames (an IK branch switch would make an event burst)."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        scene = random_scene(rng)
        motion = random_motion(class_id, rng)
        t = np.arange(0, 3.0, 0.002)
        joints = joint_positions(scene.figure, pose_at(scene, motion, t))
        for name, path in joints.items():
            step = np.hypot(*np.diff(path, axis=0).T)
            assert step.max() < 1.5, (GESTURE_CLASSES[class_id], seed, name, float(step.max()))
