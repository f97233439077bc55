"""The input recipe: one frozen description of sensor events -> model input.

The acceptance line of issue 12: one recording through the training dataset path
and through the live pipeline (a real recording replayed as a file source, and
the same under the live policy) gives identical model input tensors -- same
windows, same values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import RECORDINGS

from dvsapp.core.errors import CheckpointError, ConfigError, EventDataError
from dvsapp.core.events import Packet, SensorSize, make_events
from dvsapp.core.recipe import FilterSpec, InputRecipe, recipe_from_metadata
from dvsapp.core.train.datasets import Recording, bin_recording


class RecipeProbe:
    """A stand-in classifier that carries a recipe and keeps every window it is given (no model)."""

    class_names = ("a", "b")

    def __init__(self, recipe: InputRecipe) -> None:
        self.recipe = recipe
        self.input_size, self.step_us, self.steps_per_window = (
            recipe.input_size,
            recipe.step_us,
            recipe.timesteps,
        )
        self.frames: dict[int, np.ndarray] = {}
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def step(self, window):
        from dvsapp.core.classify import Prediction

        self.frames[int(window.index)] = window.frames.copy()
        probs = np.array([0.5, 0.5], np.float32)
        return Prediction(int(window.t_end_us), probs, "a", 0, 0.5, window_index=int(window.index),
                          t_start_us=int(window.t_start_us), n_events=int(window.n_events))  # fmt: skip


def _through_pipeline(source, recipe: InputRecipe) -> dict[int, np.ndarray]:
    from dvsapp.core.pipeline import Pipeline, run_pipeline

    probe = RecipeProbe(recipe)
    run_pipeline(Pipeline(source, probe), handle_signals=False)
    return probe.frames


def _dataset_windows(path, recipe: InputRecipe) -> tuple[np.ndarray, object]:
    """The training path: a labeled-recording ``Recording`` binned by ``bin_recording`` -> float32 windows."""
    import functools

    from dvsapp.core.io import open_events
    from dvsapp.core.train.datasets import _read_event_file

    reader = open_events(path)
    rec = Recording(
        path.stem, SensorSize(*reader.sensor_size), (), functools.partial(_read_event_file, str(path))
    )
    fr = bin_recording(rec, recipe)
    assert fr.frames.dtype == np.uint8
    return fr.frames.astype(np.float32), fr  # what ClipBank.gather hands the model


def _assert_same_windows(live: dict[int, np.ndarray], offline: np.ndarray, t: int, *, every: bool) -> None:
    n_full = len(offline) // t
    assert live, "no window came through the pipeline"
    if every:
        # complete windows, then at most the flushed partial window at the end
        assert sorted(live) == list(range(len(live))) and len(live) in (n_full, n_full + 1)
    for k, frames in live.items():
        assert frames.dtype == np.float32 and frames.shape[0] == t
        want = offline[k * t : (k + 1) * t]
        if len(want) < t:  # the flushed last window is zero-padded
            want = np.concatenate([want, np.zeros((t - len(want), *want.shape[1:]), np.float32)])
        np.testing.assert_array_equal(frames, want, err_msg=f"window {k}")


def test_bundled_recording_gives_identical_input_in_training_replay_and_live():
    """The bundled model's recipe on the bundled recording: dataset path == file replay == live policy."""
    from dvsapp.core.classify import checkpoint_recipe
    from dvsapp.core.io import open_events
    from dvsapp.core.sources import ArraySource, open_source

    path = RECORDINGS / "gestures.aedat4"
    recipe = checkpoint_recipe(None)  # the bundled model's
    offline, fr = _dataset_windows(path, recipe)
    assert recipe.input_size == SensorSize(64, 64, 2) and offline.shape[1:] == (2, 64, 64)
    assert float(offline.sum()) > 100_000  # the recording's events are in there

    replay = _through_pipeline(open_source(f"file:{path}?speed=0"), recipe)
    _assert_same_windows(replay, offline, recipe.timesteps, every=True)

    # the live policy: windows may be dropped whole (the queue is bounded), never changed
    reader = open_events(path)
    live_src = ArraySource(reader.read_all(), reader.sensor_size, speed=0, live=True, packet_us=5_000)
    live = _through_pipeline(live_src, recipe)
    _assert_same_windows(live, offline, recipe.timesteps, every=False)
    assert len(live) >= 10


def test_odd_sensor_with_filters_and_clipping_gives_identical_input(shared_data):
    """A 346x260 DAVIS recording, a 32x32 recipe with a filter and a low clip: the crop rule, the
    filter state carried across packets and the clipping all agree between the two paths."""
    from dvsapp.core.sources import open_source

    path = shared_data / "davis346_aestream.aedat4"
    if not path.is_file():
        pytest.skip("davis346_aestream.aedat4 is not in ../shared/data")
    recipe = InputRecipe(
        (32, 32, 2), 5_000, 4, clip=3, filters=(FilterSpec("refractory", {"refractory_us": 1_000}),)
    )
    offline, _ = _dataset_windows(path, recipe)
    assert offline.max() == 3.0, "the clip is exercised"
    replay = _through_pipeline(open_source(f"file:{path}?speed=0&packet_us=3000"), recipe)
    _assert_same_windows(replay, offline, recipe.timesteps, every=True)


def test_stream_equals_frames_for_any_packet_split(rng):
    size = SensorSize(50, 30)
    n = 20_000
    t = np.sort(rng.integers(0, 400_000, n))
    ev = make_events(rng.integers(0, 50, n), rng.integers(0, 30, n), t, rng.random(n) < 0.5)
    recipe = InputRecipe(
        (20, 20, 1), 7_000, 3, clip=2, filters=(FilterSpec("denoise", {"filter_time_us": 4_000}),)
    )
    t0 = recipe.first_step_us(ev, size)
    stream = recipe.stream(size)
    windows = []
    cuts = np.sort(rng.integers(0, n, 15))
    for part in np.split(ev, cuts):
        until = int(part["t"][-1]) + 1 if len(part) else None
        if until is not None:
            windows += stream.push(Packet(part, until))
    windows += stream.flush()
    assert stream.binner.t0_us == t0
    whole = recipe.frames(ev, size, t0_us=t0, n_steps=len(windows) * 3)
    got = np.concatenate([w.frames for w in windows])
    np.testing.assert_array_equal(got, whole)
    assert got.max() == 2.0 and got.shape[1] == 1  # clipped; one polarity channel


def test_spatial_rule_box_downsamples_exact_multiples_and_crops_others():
    recipe = InputRecipe((32, 32, 2), 1_000, 1)
    assert recipe.spatial_map((32, 32, 2)) is None
    ev = make_events([0, 3, 4, 127, 127], [0, 3, 7, 127, 0], [0, 1, 2, 3, 4], [1, 0, 1, 1, 0])
    box = recipe.adapt(ev, (128, 128, 2))
    assert box["x"].tolist() == [0, 0, 1, 31, 31] and box["y"].tolist() == [0, 0, 1, 31, 0]
    # 64x32 onto 32x32: scale 1 (fills the height), the centred 32 columns survive
    wide = recipe.adapt(make_events([0, 15, 16, 47, 48], [5] * 5, range(5), [1] * 5), (64, 32, 2))
    assert wide["x"].tolist() == [0, 31] and wide["t"].tolist() == [2, 3]
    assert len(ev) == 5 and ev["x"].tolist() == [0, 3, 4, 127, 127]  # input untouched


def test_encoding_is_float32_of_clipped_counts():
    recipe = InputRecipe((4, 4, 2), 1_000, 2, clip=5)
    ev = make_events([1] * 9 + [2], [1] * 9 + [2], list(range(9)) + [1_500], [1] * 9 + [0])
    frames = recipe.frames(ev, (4, 4, 2), t0_us=0, n_steps=2)
    assert frames.dtype == np.float32 and frames.shape == (2, 2, 4, 4)
    assert frames[0, 1, 1, 1] == 5.0 and frames[1, 0, 2, 2] == 1.0 and frames.sum() == 6.0
    stored = recipe.count(ev, t0_us=0, n_steps=2, dtype=np.uint8)
    np.testing.assert_array_equal(stored.astype(np.float32), frames)
    with pytest.raises(EventDataError, match="outside"):
        recipe.count(make_events([9], [0], [0], [1]), t0_us=0, n_steps=1)


def test_recipe_round_trips_through_json_and_checks_its_fields():
    recipe = InputRecipe(
        (48, 32, 1), 12_500, 6, clip=9,
        filters=(FilterSpec("denoise", {"filter_time_us": 3_000, "neighbours": 8}),
                 FilterSpec("hot_pixel", {"factor": 10.0})),
    )  # fmt: skip
    text = recipe.to_json()
    back = InputRecipe.from_json(text)
    assert back == recipe and hash(back) == hash(recipe)
    assert json.loads(text)["filters"][0] == {
        "name": "denoise",
        "params": {"filter_time_us": 3_000, "neighbours": 8},
    }
    assert back.window_us == 75_000 and back.filters[1].build().factor == 10.0
    with pytest.raises(ConfigError, match="unknown filter"):
        FilterSpec("blur", {})
    with pytest.raises(ConfigError, match="bad parameters"):
        FilterSpec("denoise", {"radius": 2})
    with pytest.raises(ConfigError, match="above 255"):
        InputRecipe((8, 8, 2), 1_000, 1, clip=256)
    with pytest.raises(ConfigError, match="only rule"):
        InputRecipe((8, 8, 2), 1_000, 1, spatial="pad")
    with pytest.raises(ConfigError, match="polarities"):
        InputRecipe((8, 8, 3), 1_000, 1)
    with pytest.raises(ConfigError, match="unknown fields: colour"):
        InputRecipe.from_dict({**recipe.to_dict(), "colour": 1})
    with pytest.raises(ConfigError, match="lacks step_us"):
        InputRecipe.from_dict({"input_size": [8, 8, 2], "timesteps": 2})
    from dvsapp.core.filters import Refractory

    assert FilterSpec.of(Refractory(700)) == FilterSpec("refractory", {"refractory_us": 700})


def test_metadata_without_recipe_is_refused_in_one_line():
    with pytest.raises(CheckpointError, match="no input recipe") as exc:
        recipe_from_metadata({"note": "x"}, path="m.safetensors")
    assert str(exc.value).startswith("m.safetensors: ") and "\n" not in str(exc.value)
    with pytest.raises(CheckpointError, match="lacks timesteps"):
        recipe_from_metadata({"recipe": {"input_size": [8, 8, 2], "step_us": 1}})
