"""StreamingClassifier: kept state, reset, smoothing, taps, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.classify import Prediction, StreamingClassifier, load_classifier
from core.errors import CheckpointError, ConfigError
from core.events import Window


def tiny_model(seed: int = 0):
    from core.model import build_model, preset

    torch.manual_seed(seed)
    return build_model(preset("tiny")).eval()


def windows_from(frames: np.ndarray, steps: int) -> list[Window]:
    """Cut ``frames [N*T, P, H, W]`` into consecutive windows of ``steps``."""
    out = []
    for k in range(len(frames) // steps):
        part = frames[k * steps : (k + 1) * steps]
        out.append(Window(part, k * 80_000, (k + 1) * 80_000, int(part.sum()), index=k))
    return out


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(5)
    return (rng.random((24, 2, 64, 64)) < 0.05).astype(np.float32) * 2


def test_state_is_kept_across_windows(frames):
    model = tiny_model()
    clf = StreamingClassifier(model)
    assert clf.step_us == 10_000 and clf.steps_per_window == 8 and clf.input_size[:2] == (64, 64)
    preds = [clf.step(w) for w in windows_from(frames, 8)]
    with torch.inference_mode():
        logits, _ = model(torch.from_numpy(frames).unsqueeze(1))
    ref = torch.softmax(logits[7::8, 0], -1).numpy()
    got = np.stack([p.probs for p in preds])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # a fresh classifier on the last window alone gives something else: the state mattered
    alone = StreamingClassifier(model).step(windows_from(frames, 8)[2])
    assert not np.allclose(alone.probs, preds[2].probs)


def test_reset_starts_from_rest(frames):
    clf = StreamingClassifier(tiny_model())
    ws = windows_from(frames, 8)
    first = clf.step(ws[0])
    clf.step(ws[1])
    clf.reset()
    assert clf.state is None
    again = clf.step(ws[0])
    np.testing.assert_allclose(again.probs, first.probs, atol=1e-6)


def test_prediction_fields(frames):
    clf = StreamingClassifier(tiny_model())
    w = windows_from(frames, 8)[1]
    p = clf.step(w)
    assert isinstance(p, Prediction)
    assert p.t_us == w.t_end_us and p.t_start_us == w.t_start_us and p.window_index == 1
    assert p.probs.shape == (11,) and p.probs.dtype == np.float32
    assert abs(float(p.probs.sum()) - 1) < 1e-5
    assert p.class_id == int(np.argmax(p.probs)) and p.label == clf.class_names[p.class_id]
    assert p.confidence == pytest.approx(float(p.probs.max()))
    assert p.taps is None and p.latency_us >= 0 and p.model_ms > 0
    row = json.loads(json.dumps(p.as_dict()))
    assert row["label"] == p.label and len(row["probs"]) == 11


def test_latency_counts_from_arrival(frames):
    import time
    from dataclasses import replace

    clf = StreamingClassifier(tiny_model())
    w = replace(windows_from(frames, 8)[0], arrival_s=time.monotonic() - 0.5)
    assert clf.step(w).latency_us >= 500_000


def test_smoothing_is_an_ema(frames):
    model = tiny_model()
    plain = StreamingClassifier(model)
    smooth = StreamingClassifier(model, smoothing=0.75)
    ws = windows_from(frames, 8)
    a = [plain.step(w).probs for w in ws]
    b = [smooth.step(w).probs for w in ws]
    np.testing.assert_allclose(b[0], a[0], atol=1e-6)
    np.testing.assert_allclose(b[1], 0.75 * b[0] + 0.25 * a[1], atol=1e-6)
    with pytest.raises(ConfigError):
        StreamingClassifier(model, smoothing=1.0)


def test_taps_are_recorded_on_request(frames):
    clf = StreamingClassifier(tiny_model(), record_taps=True)
    p = clf.step(windows_from(frames, 8)[0])
    assert p.taps is not None
    assert set(p.taps.attention[0]) >= {"q", "k", "v", "out"}
    assert p.taps.attention[0]["q"].shape[0] == 8
    assert p.taps.rates


def test_model_without_config_needs_sizes():
    class Echo(torch.nn.Module):
        def forward(self, x, state=None):
            return x.mean(dim=(2, 3, 4), keepdim=False)[..., None].repeat(1, 1, 3), state

    with pytest.raises(ConfigError):
        StreamingClassifier(Echo(), class_names=("a", "b", "c"))
    clf = StreamingClassifier(
        Echo(), class_names=("a", "b", "c"), input_size=(8, 8, 2), step_us=1000, steps_per_window=2
    )
    w = Window(np.ones((2, 2, 8, 8), np.float32), 0, 2000, 10)
    assert clf.step(w).probs.shape == (3,)


def test_load_classifier_from_checkpoint(tmp_path, frames):
    from core.model import save_checkpoint

    model = tiny_model(3)
    path = save_checkpoint(tmp_path / "m.safetensors", model, metadata={"note": "test"})
    clf = load_classifier(path)
    assert clf.metadata["path"] == str(path) and clf.metadata["note"] == "test"
    w = windows_from(frames, 8)[0]
    np.testing.assert_allclose(clf.step(w).probs, StreamingClassifier(model).step(w).probs, atol=1e-6)


def test_load_classifier_errors(tmp_path):
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_classifier(bad)


def test_missing_bundled_model_is_a_clear_error():
    from core.model import bundled_checkpoint

    if bundled_checkpoint().is_file():
        pytest.skip("the bundled model exists")
    with pytest.raises(CheckpointError, match="bundled"):
        load_classifier(None)
