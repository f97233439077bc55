"""``dvsapp eval``: the report on the bundled recording is complete and self-consistent.

The shipped model's accuracy goal is not asserted here (it is quoted in
docs/train.md); what is asserted is that every figure of the report follows
from the per-clip results and the recording's labels, that the PNG draws the
same confusion matrix, and that existing outputs are kept without ``--force``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dvsapp.core.labels import read_labels_csv
from dvsapp.core.train.datasets import FrameRecording, Span
from dvsapp.core.train.evaluate import format_report, score_recordings

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"
LABELS = REPO / "recordings" / "gestures_labels.csv"


def _dvsapp(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dvsapp.app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Run ``dvsapp eval`` on the bundled recording: refused once without --force, then forced."""
    out = tmp_path_factory.mktemp("eval")
    report, png = out / "report.json", out / "confusion.png"
    report.write_text("an earlier report\n")
    refused = _dvsapp("eval", str(RECORDING), "--report", str(report), "--confusion", str(png))
    kept = report.read_text()
    png_after_refusal = png.exists()
    proc = _dvsapp("eval", str(RECORDING), "--report", str(report), "--confusion", str(png), "--force")
    return {
        "refused": refused,
        "kept": kept,
        "png_after_refusal": png_after_refusal,
        "proc": proc,
        "report": report,
        "png": png,
    }


def test_eval_refuses_to_overwrite_without_force(evaluated):
    refused = evaluated["refused"]
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(evaluated["report"]) in lines[0] and "--force" in lines[0]
    assert evaluated["kept"] == "an earlier report\n" and not evaluated["png_after_refusal"]
    assert refused.stdout == ""  # refused before evaluating anything


def test_eval_of_the_bundled_recording_reports_consistent_figures(evaluated):
    proc = evaluated["proc"]
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(evaluated["report"].read_text())
    segments = read_labels_csv(LABELS)
    names = rep["class_names"]
    assert len(names) == 11 and rep["n_clips"] == len(segments) == 11

    # one clip per labeled segment, in order, with the segment's class and times
    clips = rep["clips"]
    assert [(c["class_id"], c["start_us"], c["end_us"]) for c in clips] == [
        (s.class_id, s.start_us, s.end_us) for s in segments
    ]

    conf = np.array(rep["confusion"])
    support = np.bincount([s.class_id for s in segments], minlength=11)
    np.testing.assert_array_equal(conf.sum(axis=1), support)  # row sums = support
    np.testing.assert_array_equal(
        conf.sum(axis=0), np.bincount([c["predicted"] for c in clips], minlength=11)
    )
    assert rep["clip_accuracy"] == pytest.approx(np.trace(conf) / conf.sum())
    assert rep["clip_accuracy"] == pytest.approx(np.mean([c["predicted"] == c["class_id"] for c in clips]))
    for i in range(11):
        col, row = conf[:, i].sum(), conf[i].sum()
        assert rep["precision"][i] == (None if col == 0 else pytest.approx(conf[i, i] / col))
        assert rep["recall"][i] == (None if row == 0 else pytest.approx(conf[i, i] / row))

    # streaming accuracy after 100 / 200 / 500 ms from each gesture's start
    for h in ("100", "200", "500"):
        assert rep["stream_accuracy"][h] == pytest.approx(np.mean([c["stream_correct"][h] for c in clips]))
    latencies = [c["latency_ms"] for c in clips if c["latency_ms"] is not None]
    assert rep["decided_fraction"] == pytest.approx(len(latencies) / 11)
    for c in clips:
        if c["latency_ms"] is not None:
            assert 0 < c["latency_ms"] <= (c["end_us"] - c["start_us"]) / 1000
    if latencies:
        assert rep["latency_ms_median"] == pytest.approx(float(np.median(latencies)))
    assert 0.0 <= rep["step_accuracy"] <= 1.0
    assert rep["meta"]["checkpoint"].endswith("tiny_synth.safetensors")
    from dvsapp.core.classify import checkpoint_recipe

    assert rep["meta"]["recipe"] == checkpoint_recipe(None).to_dict()  # the checkpoint's own recipe
    assert rep["meta"]["paths"] == [str(RECORDING)]
    assert rep["meta"]["recipe"]["input_size"] == [64, 64, 2] and rep["meta"]["recipe"]["clip"] == 255

    # the printed summary carries the same figures and matrix
    out = proc.stdout
    assert f"clip accuracy: {100 * rep['clip_accuracy']:.1f}%" in out
    assert f"500 ms {100 * rep['stream_accuracy']['500']:.1f}%" in out
    for i, name in enumerate(names):
        printed = next(line for line in out.splitlines() if line.startswith(name + " ") and "%" not in line)
        assert [int(v) for v in printed.split()[1:]] == conf[i].tolist()
    assert f"report: {evaluated['report']}" in out and f"confusion matrix: {evaluated['png']}" in out


def test_confusion_png_draws_the_reported_matrix(evaluated):
    import cv2

    rep = json.loads(evaluated["report"].read_text())
    img = cv2.imread(str(evaluated["png"]))
    assert img is not None
    names, conf = rep["class_names"], np.array(rep["confusion"])
    cell, top = 44, 40
    label_w = 12 + 9 * max(len(s) for s in names)
    assert img.shape == (top + 11 * cell + 12 + label_w, label_w + 11 * cell + 12, 3)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    for i in range(11):
        for j in range(11):
            b, g, r = (int(v) for v in img[top + i * cell + 3, label_w + j * cell + 3])
            shade = int(255 * (1 - norm[i, j]))
            expected = (255, shade, shade) if i == j else (shade, shade, 255)  # blue diagonal, red errors
            assert (b, g, r) == expected, (names[i], names[j])


def test_eval_cli_on_a_file_without_labels_exits_2(tmp_path):
    bare = tmp_path / "bare.aedat4"
    bare.write_bytes(RECORDING.read_bytes())
    proc = _dvsapp("eval", str(bare))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bare) in lines[0] and "no label segments" in lines[0]


def test_scores_follow_the_documented_rules():
    """Hand-made probabilities: 10 ms steps, windows of 4 steps (40 ms), 102 steps (last 2 unscored)."""
    n, T = 102, 4
    pred = np.zeros(n, dtype=int)
    pred[30:70] = 1
    pred[70:] = 2
    probs = np.eye(11, dtype=np.float32)[pred]
    probs[100:] = np.nan  # what run_model_on_frames gives after the last complete window
    spans = (Span(1, 200_000, 700_000), Span(2, 750_000, 1_000_000), Span(3, 0, 150_000))
    labels = np.full(n, -1, dtype=np.int16)
    mid = np.arange(n) * 10_000 + 5_000
    for s in spans:
        labels[(mid >= s.start_us) & (mid < s.end_us)] = s.class_id
    rec = FrameRecording("hand-made", np.zeros((n, 2, 4, 4), np.uint8), labels, 0, 10_000, spans)
    names = [f"c{i}" for i in range(11)]
    rep = score_recordings([rec], [probs], timesteps=T, class_names=names, horizons_ms=(100, 200, 500))

    assert [(c.class_id, c.predicted) for c in rep.clips] == [(1, 1), (2, 2), (3, 0)]
    assert rep.clip_accuracy == pytest.approx(2 / 3)
    # span 1 +100 ms -> window ending at 280 ms still says 0; +200 ms -> 400 ms says 1
    assert [c.stream_correct for c in rep.clips] == [
        {100: False, 200: True, 500: True},
        {100: True, 200: True, 500: True},
        {100: False, 200: False, 500: False},
    ]
    assert rep.stream_accuracy == pytest.approx({100: 1 / 3, 200: 2 / 3, 500: 2 / 3})
    # correct from the window ending at 320 ms on (120 ms after 200 ms); span 2 from its first window
    assert [c.latency_ms for c in rep.clips] == [120.0, 10.0, None]
    assert rep.latency_ms_median == 65.0 and rep.decided_fraction == pytest.approx(2 / 3)
    assert rep.step_accuracy == pytest.approx((40 + 25) / (50 + 25 + 15))
    assert rep.confusion[1, 1] == 1 and rep.confusion[2, 2] == 1 and rep.confusion[3, 0] == 1
    assert rep.confusion.sum() == 3
    assert rep.precision[0] == 0.0 and np.isnan(rep.precision[3]) and rep.recall[3] == 0.0
    text = format_report(rep)
    assert "clip accuracy: 66.7%" in text and "100 ms 33.3%" in text


def test_chunked_evaluation_gives_the_per_window_probabilities():
    """Several windows per model call (the trainer's fast validation) change nothing but speed."""
    import torch

    from dvsapp.core.model import build_model, preset
    from dvsapp.core.train.evaluate import run_model_on_frames

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(preset("tiny")).eval()
    cfg = model.config
    T = cfg.timesteps
    rng = np.random.default_rng(3)
    recs = []
    for k, n in enumerate((7 * T + 3, 4 * T)):  # unequal lengths: padding and an incomplete window
        frames = (rng.random((n, cfg.in_channels, *cfg.input_hw)) < 0.08).astype(np.uint8) * 2
        recs.append(FrameRecording(f"r{k}", frames, np.full(n, -1, np.int16), 0, 20_000, ()))
    one = run_model_on_frames(model, recs, timesteps=T, batch_size=2)
    three = run_model_on_frames(model, recs, timesteps=T, batch_size=2, chunk_windows=3)
    for a, b in zip(one, three):
        assert a.shape == b.shape and np.isnan(a[:, 0]).sum() == np.isnan(b[:, 0]).sum()
        np.testing.assert_array_equal(a, b)
    assert np.isnan(one[0][-3:]).all() and not np.isnan(one[0][: 7 * T]).any()
    with pytest.raises(ValueError, match="chunk_windows"):
        run_model_on_frames(model, recs, timesteps=T, chunk_windows=0)
