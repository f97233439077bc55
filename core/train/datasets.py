"""Labeled event recordings for training and evaluation, and streaming-style clip sampling.

Every source of training data becomes a list of :class:`Recording` — a lazily
loaded event stream plus the labeled gesture spans in it — so one sampler and
one evaluator serve them all:

=====================  =====================================================================
``dvsgesture``         DVS128 Gesture, original release: ``userNN_<lighting>.aedat`` (AEDAT 3.1),
                       ``userNN_<lighting>_labels.csv``, ``trials_to_train.txt`` / ``trials_to_test.txt``;
                       one recording per file, cut by its label segments, official user split.
``tonic-dvsgesture``   tonic's preprocessed layout ``ibmGestureTrain|Test/userNN_<lighting>/<class>.npy``
                       read through ``tonic.datasets.DVSGesture`` (never downloads here).
``recordings``         labeled recordings from the labeling tool: any event file ``dvsapp.core.io`` reads
                       with its segments (HDF5 label table or ``<stem>_labels.csv`` beside it).
``h5``                 a dataset exported by ``dvsapp label export`` (``dvsapp-label-dataset`` HDF5).
``synthetic``          gesture sequences rendered by ``dvsapp.core.synth.make_sequence`` from integer seeds.
=====================  =====================================================================

Training then works on binned recordings (:class:`FrameRecording`: the model input
made by the model's :class:`~dvsapp.core.recipe.InputRecipe` -- the same filters,
spatial map, counting kernel and clipping the live pipeline uses -- stored as
uint8 ``[S, P, H, W]`` for ``S`` timesteps, with one label per timestep) from which
:class:`ClipBank` draws random clips of ``L`` windows of ``T`` timesteps anywhere
in the stream, so the model learns to answer from any point of a stream with its
state carried across windows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dvsapp.core.atomic import atomic_path
from dvsapp.core.errors import ConfigError, EventFileError, LabelError
from dvsapp.core.events import SensorSize, as_events, empty_events
from dvsapp.core.gestures import GESTURE_CLASSES, mirrored_class
from dvsapp.core.recipe import InputRecipe

DVS128 = SensorSize(128, 128, 2)
NO_LABEL = -1
"""Label of timesteps outside every gesture span (ignored by the loss)."""

#: disjoint seed ranges of the synthetic dataset, per split: (first seed, default count)
SYNTHETIC_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 400),
    "val": (100_000, 40),
    "test": (200_000, 60),
}


class Span(NamedTuple):
    """A labeled gesture: 0-based ``class_id`` during ``start_us <= t < end_us``."""

    class_id: int
    start_us: int
    end_us: int

    @classmethod
    def of(cls, seg) -> Span:
        """Convert any object with ``class_id``, ``start_us``, ``end_us`` (e.g. ``dvsapp.core.labels.Segment``)."""
        return cls(int(seg.class_id), int(seg.start_us), int(seg.end_us))


@dataclass(frozen=True)
class Recording:
    """A lazily loaded event stream and its labeled spans.

    ``loader()`` returns the events (EVENT_DTYPE, sorted, microseconds); it must be
    picklable (a module-level function or a ``functools.partial`` of one) so that
    recordings cross process boundaries.
    """

    name: str
    sensor_size: SensorSize
    spans: tuple[Span, ...]
    loader: Callable[[], np.ndarray] = field(repr=False, compare=False)
    user: str | None = None

    def events(self) -> np.ndarray:
        return self.loader()


# --------------------------------------------------------------------------------------------
# DVS128 Gesture, original release (AEDAT 3.1 + CSV)


def _read_event_file(path: str) -> np.ndarray:
    from dvsapp.core.io import open_events

    return as_events(open_events(path).read_all())


def _read_trial_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise EventFileError(f"cannot read the trial list ({exc.strerror})", path=path) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _find_dvsgesture_root(root: Path) -> Path:
    for cand in (root, root / "DvsGesture", root / "DVSGesture"):
        if (cand / "trials_to_train.txt").is_file() or (cand / "trials_to_test.txt").is_file():
            return cand
    raise EventFileError(
        "not a DVS128 Gesture folder (expected trials_to_train.txt / trials_to_test.txt and userNN_*.aedat)",
        path=root,
    )


#: DVS128 Gesture training users held out for validation (the last three of users 1-23)
DVSGESTURE_VAL_USERS = frozenset({"user21", "user22", "user23"})


def _user_of(name: str) -> str:
    """``user05_fluorescent.aedat`` -> ``user05``."""
    return Path(name).name.split("_", 1)[0]


def dvsgesture_recordings(root: str | os.PathLike, split: str = "train") -> list[Recording]:
    """DVS128 Gesture as distributed (``DvsGesture.tar.gz`` unpacked), official user split.

    Parameters
    ----------
    root : the ``DvsGesture`` folder (or its parent)
    split : ``"train"`` (``trials_to_train.txt`` without the validation users),
        ``"val"`` (the validation users' trials from ``trials_to_train.txt``: held-out
        *training* users, so the best checkpoint is never chosen on the test users),
        ``"test"`` (``trials_to_test.txt``) or ``"all"``
    """
    from dvsapp.core.labels import read_labels_csv

    base = _find_dvsgesture_root(Path(root))
    lists = {"train": ["trials_to_train.txt"], "test": ["trials_to_test.txt"], "val": ["trials_to_train.txt"]}
    lists["all"] = lists["train"] + lists["test"]
    if split not in lists:
        raise ConfigError(f"unknown split {split!r} (train, val, test, all)")
    names: list[str] = []
    for list_name in lists[split]:
        names += _read_trial_list(base / list_name)
    if split in ("train", "val"):
        names = [n for n in names if (_user_of(n) in DVSGESTURE_VAL_USERS) == (split == "val")]
    recordings = []
    for name in names:
        aedat = base / name
        if not aedat.is_file():
            raise EventFileError(f"listed in the trial list but missing: {name}", path=base)
        labels = aedat.with_name(aedat.stem + "_labels.csv")
        if not labels.is_file():
            raise LabelError(f"no label file {labels.name} beside the recording", path=aedat)
        spans = tuple(Span.of(s) for s in read_labels_csv(labels))
        user = name.split("_", 1)[0]
        recordings.append(
            Recording(aedat.stem, DVS128, spans, functools.partial(_read_event_file, str(aedat)), user)
        )
    return recordings


# --------------------------------------------------------------------------------------------
# tonic's DVSGesture layout


@functools.lru_cache(maxsize=8)
def _tonic_dataset(root: Path, train: bool):
    """``tonic.datasets.DVSGesture`` over an existing folder; never downloads.

    Cached per process: tonic walks the whole folder to list it, and every clip's
    loader needs the same listing (the same order) as :func:`tonic_recordings`.
    """
    import tonic

    folder = "ibmGestureTrain" if train else "ibmGestureTest"
    for location in (root, root / "DVSGesture"):
        if (location / folder).is_dir():
            break
    else:
        raise EventFileError(f"no {folder} folder (tonic's DVSGesture layout)", path=root)

    class DVSGesture(tonic.datasets.DVSGesture):  # same class name: tonic derives its folder from it
        def _check_exists(self) -> bool:
            self.location_on_system = str(location)  # read the folder where it is
            return True

        def download(self) -> None:  # pragma: no cover - _check_exists never fails
            raise EventFileError("tonic's DVSGesture is not present and nothing downloads here", path=root)

    return DVSGesture(str(root), train=train)


def _load_tonic_item(root: str, train: bool, index: int) -> np.ndarray:
    events, _ = _tonic_dataset(Path(root), train)[index]
    # argsort on t alone: np.sort(order="t") would break ties by x, y, p and reorder equal times
    return as_events(events[np.argsort(events["t"], kind="stable")])


def tonic_recordings(root: str | os.PathLike, split: str = "train") -> list[Recording]:
    """tonic's preprocessed DVSGesture (``.npy`` per gesture), one recording per gesture clip.

    The span of each clip is its whole duration (the first to the last event).
    """
    if split not in ("train", "test", "val"):
        raise ConfigError(f"unknown split {split!r} (train, val, test)")
    train = split in ("train", "val")  # validation: held-out training users, never the test users
    ds = _tonic_dataset(Path(root), train)
    recordings = []
    for i, path in enumerate(ds.data):
        if train and ((f"user{ds.users[i]:02d}" in DVSGESTURE_VAL_USERS) != (split == "val")):
            continue
        target = int(ds.targets[i])
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise EventFileError(f"expected an [N, 4] array (x, y, p, t_ms), got {arr.shape}", path=path)
        t_ms = np.asarray(arr[:, 3])
        start_us = int(t_ms.min() * 1000) if len(t_ms) else 0
        end_us = int(t_ms.max() * 1000) + 1000 if len(t_ms) else 0
        name = f"{Path(path).parent.name}/{Path(path).stem}"
        recordings.append(
            Recording(
                name,
                DVS128,
                (Span(target, start_us, end_us),),
                functools.partial(_load_tonic_item, str(root), train, i),
                f"user{ds.users[i]:02d}",
            )
        )
    return recordings


# --------------------------------------------------------------------------------------------
# labeled recordings from the labeling tool

RECORDING_SUFFIXES = (".h5", ".hdf5", ".aedat4", ".aedat", ".npz", ".csv", ".raw", ".dat")


def _labels_of(path: Path) -> list | None:
    from dvsapp.core.labels import find_labels

    return find_labels(path)


def recording_from_file(path: str | os.PathLike) -> Recording:
    """One labeled recording: events via ``dvsapp.core.io.open_events``, spans via ``dvsapp.core.labels.find_labels``."""
    from dvsapp.core.io import open_events

    path = Path(path)
    segments = _labels_of(path)
    if not segments:
        raise LabelError("no label segments in the file or beside it (<stem>_labels.csv)", path=path)
    reader = open_events(path)
    return Recording(
        path.stem,
        SensorSize(*reader.sensor_size),
        tuple(Span.of(s) for s in segments),
        functools.partial(_read_event_file, str(path)),
    )


def labeled_recordings(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Recording]:
    """Recordings from files, or from every labeled event file in the given folders.

    A file named explicitly must have labels (:class:`LabelError` otherwise); in a
    folder, files without labels and the ``*_labels.csv`` files themselves are skipped.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    recordings = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if f.suffix.lower() not in RECORDING_SUFFIXES or f.stem.endswith("_labels"):
                    continue
                if _labels_of(f):
                    recordings.append(recording_from_file(f))
        elif p.is_file():
            recordings.append(recording_from_file(p))
        else:
            raise EventFileError("no such file or folder", path=p)
    if not recordings:
        raise LabelError("no labeled recordings found", path=", ".join(map(str, paths)))
    return recordings


# --------------------------------------------------------------------------------------------
# a dataset exported by the labeling tool (``dvsapp label export``)


def _held(events: np.ndarray) -> np.ndarray:
    return events


def exported_recordings(path: str | os.PathLike, split: str = "train") -> list[Recording]:
    """Groups of a ``dvsapp-label-dataset`` HDF5 file (see :mod:`dvsapp.core.labels`) of one split.

    ``split`` ``"val"`` reads the file's ``"test"`` groups; ``"all"`` reads every group.
    """
    from dvsapp.core.labels import read_dataset

    wanted = {"train": "train", "val": "test", "test": "test", "all": None}
    if split not in wanted:
        raise ConfigError(f"unknown split {split!r} (train, val, test, all)")
    recordings = []
    for item in read_dataset(path, split=wanted[split]):
        if not item.segments:
            continue
        recordings.append(
            Recording(
                f"{Path(item.source).stem}#{item.index}",
                item.sensor_size,
                tuple(Span.of(s) for s in item.segments),
                functools.partial(_held, as_events(item.events)),
            )
        )
    if not recordings:
        raise LabelError(f"no labeled groups in split {split!r}", path=path)
    return recordings


# --------------------------------------------------------------------------------------------
# synthetic gesture sequences


def _synthetic_sequence(seed: int, n_gestures: int) -> tuple[np.ndarray, list]:
    from dvsapp.core.synth import make_sequence

    return make_sequence(seed, n_gestures)


def synthetic_recording(seed: int, n_gestures: int = 4) -> Recording:
    """One rendered sequence of ``n_gestures`` gestures (rendered now, held in memory)."""
    events, segments = _synthetic_sequence(seed, n_gestures)
    spans = tuple(Span.of(s) for s in segments)
    return Recording(f"synthetic-{seed}", DVS128, spans, functools.partial(_held, as_events(events)))


def synthetic_seeds(split: str, n_seeds: int | None = None) -> range:
    """The seeds of a synthetic split (train/val/test ranges never overlap)."""
    if split not in SYNTHETIC_SPLITS:
        raise ConfigError(f"unknown split {split!r} ({', '.join(SYNTHETIC_SPLITS)})")
    first, default = SYNTHETIC_SPLITS[split]
    n = default if n_seeds is None else int(n_seeds)
    return range(first, first + n)


def synthetic_recordings(
    split: str = "train", n_seeds: int | None = None, n_gestures: int = 4
) -> list[Recording]:
    """Synthetic sequences for ``split``; each seed gives ``n_gestures`` gestures."""
    return [synthetic_recording(s, n_gestures) for s in synthetic_seeds(split, n_seeds)]


# --------------------------------------------------------------------------------------------
# registry


def _by_root(fn: Callable[..., list[Recording]]) -> Callable[..., list[Recording]]:
    def load(root: str | os.PathLike | None, split: str, **_: object) -> list[Recording]:
        if root is None:
            raise ConfigError("this dataset needs --root")
        return fn(root, split)

    return load


def _recordings_loader(root, split: str, **_: object) -> list[Recording]:
    if root is None:
        raise ConfigError("the recordings dataset needs --root (a labeled file or a folder)")
    return labeled_recordings(root)


def _synthetic_loader(
    root, split: str, *, n_seeds: int | None = None, n_gestures: int = 4, **_
) -> list[Recording]:
    return synthetic_recordings(split, n_seeds, n_gestures)


DATASETS: dict[str, Callable[..., list[Recording]]] = {
    "dvsgesture": _by_root(dvsgesture_recordings),
    "tonic-dvsgesture": _by_root(tonic_recordings),
    "recordings": _recordings_loader,
    "h5": _by_root(exported_recordings),
    "synthetic": _synthetic_loader,
}
"""Dataset name -> ``loader(root, split, **options) -> list[Recording]``."""


def load_recordings(
    name: str, root: str | os.PathLike | None = None, split: str = "train", **options
) -> list[Recording]:
    """Recordings of dataset ``name`` (a key of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (one of {', '.join(DATASETS)})")
    return DATASETS[name](root, split, **options)


# --------------------------------------------------------------------------------------------
# binned recordings


@dataclass(frozen=True)
class FrameRecording:
    """A recording binned for the model: ``frames[k]`` covers ``[t0_us + k*step_us, t0_us + (k+1)*step_us)``.

    Attributes
    ----------
    frames : ``[S, P, H, W]`` uint8 clipped event counts at the model's input size (the
        recipe's encoding: the model receives them as float32)
    labels : ``[S]`` int16 class of each timestep (0-based), ``NO_LABEL`` outside gestures
    """

    name: str
    frames: np.ndarray
    labels: np.ndarray
    t0_us: int
    step_us: int
    spans: tuple[Span, ...]

    @property
    def n_steps(self) -> int:
        return int(self.frames.shape[0])


def step_labels(spans: Iterable[Span], t0_us: int, step_us: int, n_steps: int) -> np.ndarray:
    """Label of each timestep: the span holding the timestep's midpoint, else ``NO_LABEL``."""
    labels = np.full(n_steps, NO_LABEL, dtype=np.int16)
    mid = t0_us + np.arange(n_steps, dtype=np.int64) * step_us + step_us // 2
    for s in spans:
        labels[(mid >= s.start_us) & (mid < s.end_us)] = s.class_id
    return labels


def bin_recording(
    rec: Recording, recipe: InputRecipe, events: np.ndarray | None = None, *, time_scale: float = 1.0
) -> FrameRecording:
    """Bin a recording's events (loaded unless given) with ``recipe`` into a :class:`FrameRecording`.

    The events go through :meth:`InputRecipe.adapt` (filters, spatial map from
    ``rec.sensor_size``) and :meth:`InputRecipe.count` (the counting kernel and the
    clipping of the live pipeline).  ``t0_us`` is the first adapted event's time
    floored to ``step_us``: the streaming binner's alignment, so window ``k`` of a
    live run is ``frames[k*T:(k+1)*T]``.  ``time_scale`` stretches time (events and
    spans) by that factor before binning (an augmentation; 1 = none).
    """
    ev = rec.events() if events is None else events
    spans = rec.spans
    if time_scale != 1.0:
        ev = ev.copy()
        ev["t"] = np.round(ev["t"] * time_scale).astype(np.int64)
        spans = tuple(
            Span(s.class_id, round(s.start_us * time_scale), round(s.end_us * time_scale)) for s in spans
        )
    ev = recipe.adapt(ev, rec.sensor_size) if len(ev) else empty_events()
    step_us = recipe.step_us
    if len(ev) == 0:
        t_first = min((s.start_us for s in spans), default=0)
        t_last = max((s.end_us for s in spans), default=0)
    else:
        t_first, t_last = int(ev["t"][0]), int(ev["t"][-1])
        t_last = max(t_last, max((s.end_us for s in spans), default=0) - 1)
    t0 = (t_first // step_us) * step_us
    n = (t_last - t0) // step_us + 1
    frames = recipe.count(ev, t0_us=t0, n_steps=n, dtype=np.uint8)
    return FrameRecording(rec.name, frames, step_labels(spans, t0, step_us, n), t0, step_us, spans)


def _bin_loaded(rec: Recording, recipe: InputRecipe, time_scale: float) -> FrameRecording:
    return bin_recording(rec, recipe, time_scale=time_scale)


def _bin_synthetic(seed: int, n_gestures: int, recipe: InputRecipe, time_scale: float) -> FrameRecording:
    return bin_recording(synthetic_recording(seed, n_gestures), recipe, time_scale=time_scale)


def _time_scales(n: int, stretch: tuple[float, float], seed: int) -> list[float]:
    lo, hi = float(stretch[0]), float(stretch[1])
    if not 0 < lo <= hi:
        raise ConfigError(f"time stretch range {stretch} must satisfy 0 < low <= high")
    if lo == hi:
        return [lo] * n
    rng = np.random.default_rng([int(seed), 7])
    return list(np.exp(rng.uniform(np.log(lo), np.log(hi), n)))


def _single_threaded() -> None:
    """Worker initializer: one thread per process for OpenCV and torch (the pool is the parallelism)."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


def _pool_map(fn: Callable, args: list[tuple], workers: int) -> list:
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_single_threaded) as pool:
        return list(pool.map(fn, *zip(*args), chunksize=max(1, len(args) // (4 * workers))))


def build_frames(
    dataset: str,
    root: str | os.PathLike | None,
    split: str,
    recipe: InputRecipe,
    *,
    workers: int = 1,
    n_seeds: int | None = None,
    n_gestures: int = 4,
    time_stretch: tuple[float, float] = (1.0, 1.0),
    seed: int = 0,
) -> list[FrameRecording]:
    """Load and bin every recording of a dataset split with ``recipe``, over ``workers`` processes.

    Synthetic recordings are rendered inside the workers (from their seeds); each
    recording gets its own time stretch drawn log-uniformly from ``time_stretch``.
    """
    if dataset == "synthetic":
        seeds = list(synthetic_seeds(split, n_seeds))
        scales = _time_scales(len(seeds), time_stretch, seed)
        args = [(s, n_gestures, recipe, k) for s, k in zip(seeds, scales)]
        return _pool_map(_bin_synthetic, args, workers)
    recs = load_recordings(dataset, root, split)
    scales = _time_scales(len(recs), time_stretch, seed)
    return _pool_map(_bin_loaded, [(r, recipe, k) for r, k in zip(recs, scales)], workers)


def save_frames_h5(
    path: str | os.PathLike, recordings: Sequence[FrameRecording], *, attrs: dict | None = None
) -> None:
    """Cache binned recordings in one HDF5 file (group ``/<i>`` per recording)."""
    import json

    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.attrs["format"] = "dvsapp-frame-cache"
        fh.attrs["attrs"] = json.dumps(attrs or {})
        for i, r in enumerate(recordings):
            g = fh.create_group(f"{i:06d}")
            g.create_dataset("frames", data=r.frames)
            g.create_dataset("labels", data=r.labels)
            g.create_dataset("spans", data=np.array(r.spans, dtype=np.int64).reshape(-1, 3))
            g.attrs["name"] = r.name
            g.attrs["t0_us"] = r.t0_us
            g.attrs["step_us"] = r.step_us


def load_frames_h5(path: str | os.PathLike) -> tuple[list[FrameRecording], dict]:
    """Read a cache written by :func:`save_frames_h5`: ``(recordings, attrs)``."""
    import json

    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(f"cannot open the frame cache ({exc})", path=path) from None
    with fh:
        if fh.attrs.get("format") != "dvsapp-frame-cache":
            raise EventFileError("not a dvsapp frame cache", path=path)
        out = []
        for key in sorted(fh.keys()):
            g = fh[key]
            spans = tuple(Span(*map(int, row)) for row in g["spans"][()])
            out.append(
                FrameRecording(
                    str(g.attrs["name"]),
                    g["frames"][()],
                    g["labels"][()],
                    int(g.attrs["t0_us"]),
                    int(g.attrs["step_us"]),
                    spans,
                )
            )
        return out, json.loads(fh.attrs["attrs"])


# --------------------------------------------------------------------------------------------
# augmentation and clip sampling


@dataclass(frozen=True)
class Augment:
    """Frame-level augmentations applied to sampled clips.

    Attributes
    ----------
    flip_p : probability of a horizontal flip; labels become their mirrored class
        (left/right gestures swap, see :func:`dvsapp.core.gestures.mirrored_class`)
    drop_p : fraction of events dropped at random (binomial thinning of counts)
    noise_rate : mean number of spurious events per pixel and timestep (Poisson)
    """

    flip_p: float = 0.0
    drop_p: float = 0.0
    noise_rate: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip_p > 0 or self.drop_p > 0 or self.noise_rate > 0


def mirror_table(n_classes: int) -> np.ndarray:
    """``table[c]`` = class after a horizontal flip; ``table[NO_LABEL]`` (the last entry) stays -1."""
    return np.array([mirrored_class(c) for c in range(n_classes)] + [NO_LABEL], dtype=np.int64)


class ClipBank:
    """Random clips of ``clip_steps`` timesteps from binned recordings, gathered as one batch.

    All recordings are concatenated into one ``[S_total, P, H, W]`` uint8 tensor
    (on ``device``); a clip is a run of consecutive timesteps inside one
    recording.  Clip starts are drawn so that every clip overlaps a labeled
    gesture: pick a labeled timestep uniformly, then a start that puts it at a
    uniformly random position of the clip.

    :meth:`epoch_starts` fixes the clips of an epoch from ``(seed, epoch)``;
    a (distributed) sampler then shards the indices of that list.
    """

    def __init__(self, recordings: Sequence[FrameRecording], clip_steps: int, *, device="cpu") -> None:
        import torch

        if not recordings:
            raise ConfigError("no recordings to sample clips from")
        usable = [r for r in recordings if r.n_steps >= clip_steps and (r.labels >= 0).any()]
        if not usable:
            raise ConfigError(f"no recording is {clip_steps} timesteps long and labeled")
        self.clip_steps = int(clip_steps)
        self.frames = torch.from_numpy(np.concatenate([r.frames for r in usable])).to(device)
        self.labels = torch.from_numpy(np.concatenate([r.labels for r in usable]).astype(np.int64)).to(device)
        offsets = np.cumsum([0] + [r.n_steps for r in usable])
        anchors, lows, highs = [], [], []
        for r, off in zip(usable, offsets[:-1]):
            idx = np.flatnonzero(r.labels >= 0)
            anchors.append(idx + off)
            lows.append(np.full(len(idx), off))
            highs.append(np.full(len(idx), off + r.n_steps - clip_steps))
        self._anchors = np.concatenate(anchors)
        self._low = np.concatenate(lows)
        self._high = np.concatenate(highs)
        self.device = device

    @property
    def n_labeled_steps(self) -> int:
        return len(self._anchors)

    def epoch_starts(self, n_clips: int, seed: int, epoch: int) -> np.ndarray:
        """``n_clips`` clip start indices (into the concatenated timeline) for one epoch."""
        rng = np.random.default_rng([int(seed), int(epoch)])
        pick = rng.integers(0, len(self._anchors), n_clips)
        start = self._anchors[pick] - rng.integers(0, self.clip_steps, n_clips)
        return np.clip(start, self._low[pick], self._high[pick])

    def gather(self, starts: Sequence[int], *, augment: Augment | None = None, generator=None):
        """Clips at ``starts``: ``(frames [B, clip_steps, P, H, W] float32, labels [B, clip_steps] int64)``."""
        import torch

        st = torch.as_tensor(np.asarray(starts, dtype=np.int64), device=self.device)
        idx = st[:, None] + torch.arange(self.clip_steps, device=self.device)[None, :]
        frames = self.frames[idx].float()
        labels = self.labels[idx]
        if augment is not None and augment.active:
            frames, labels = apply_augment(frames, labels, augment, generator=generator)
        return frames, labels


def apply_augment(frames, labels, aug: Augment, *, generator=None, n_classes: int = len(GESTURE_CLASSES)):
    """Apply :class:`Augment` to a batch ``frames [B, S, P, H, W]``, ``labels [B, S]`` (torch tensors)."""
    import torch

    b = frames.shape[0]
    dev = frames.device
    if aug.flip_p > 0:
        flip = torch.rand(b, device=dev, generator=generator) < aug.flip_p
        table = torch.as_tensor(mirror_table(n_classes), device=dev)
        frames = torch.where(flip[:, None, None, None, None], frames.flip(-1), frames)
        labels = torch.where(flip[:, None], table[labels], labels)
    if aug.drop_p > 0:
        keep = torch.full_like(frames, 1.0 - aug.drop_p)
        frames = torch.binomial(frames, keep, generator=generator)
    if aug.noise_rate > 0:
        frames = frames + torch.poisson(torch.full_like(frames, aug.noise_rate), generator=generator)
    return frames, labels
