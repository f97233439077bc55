"""Evaluation of a streaming classifier on labeled recordings.

The model runs over each whole recording window after window with its state
carried, exactly as the live pipeline runs it: the input is made by the
checkpoint's :class:`~dvsapp.core.recipe.InputRecipe` through the pipeline's pure
stages (:func:`dvsapp.core.train.datasets.bin_recording`: the recipe's filters,
spatial map, counting kernel and clipping), windows aligned to the recording's
first event floored to ``step_us``, so window ``k`` here is window ``k`` of a
``dvsapp classify`` replay (``tests/test_recipe.py``).  Recordings are batched,
which the pipeline (one stream, one window at a time) cannot do.  From the
per-timestep class probabilities it reports:

- **clip accuracy**: per labeled span, the class with the highest mean
  probability over the span's timesteps;
- **streaming accuracy at +h ms**: per span, the prediction shown ``h`` ms after
  the span starts, i.e. the output at the last timestep of the last *complete*
  window ending at or before ``start + h`` (wrong when no window has ended yet);
- **latency to a correct decision**: from the span start to the end of the first
  window after which every window's prediction is correct until the span ends
  (no decision when the last window in the span is wrong);
- the confusion matrix of clip predictions and per-class precision / recall.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dvsapp.core.atomic import atomic_path, target_mode
from dvsapp.core.errors import ConfigError
from dvsapp.core.train.datasets import FrameRecording

DEFAULT_HORIZONS_MS: tuple[int, ...] = (100, 200, 500, 1000)


@dataclass(frozen=True)
class ClipResult:
    """The outcome for one labeled span."""

    recording: str
    class_id: int
    predicted: int
    start_us: int
    end_us: int
    stream_correct: dict[int, bool]
    latency_ms: float | None


@dataclass(frozen=True)
class EvalReport:
    """Everything ``dvsapp eval`` reports (JSON via :meth:`to_dict`)."""

    class_names: tuple[str, ...]
    n_clips: int
    clip_accuracy: float
    stream_accuracy: dict[int, float]
    step_accuracy: float
    confusion: np.ndarray  # [C, C] int, rows = true class, columns = predicted
    precision: np.ndarray  # [C] float, NaN when a class is never predicted
    recall: np.ndarray  # [C] float, NaN when a class never occurs
    latency_ms_median: float | None
    latency_ms_mean: float | None
    decided_fraction: float
    clips: tuple[ClipResult, ...] = field(repr=False)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        def nan_to_none(a):
            return [None if not np.isfinite(v) else round(float(v), 6) for v in a]

        return {
            "class_names": list(self.class_names),
            "n_clips": self.n_clips,
            "clip_accuracy": self.clip_accuracy,
            "stream_accuracy": {str(k): v for k, v in self.stream_accuracy.items()},
            "step_accuracy": self.step_accuracy,
            "confusion": self.confusion.tolist(),
            "precision": nan_to_none(self.precision),
            "recall": nan_to_none(self.recall),
            "latency_ms_median": self.latency_ms_median,
            "latency_ms_mean": self.latency_ms_mean,
            "decided_fraction": self.decided_fraction,
            "clips": [
                {**asdict(c), "stream_correct": {str(k): v for k, v in c.stream_correct.items()}}
                for c in self.clips
            ],
            "meta": self.meta,
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(path, mode=target_mode(path)) as tmp:
                tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"could not write the report: {exc.strerror or exc}", path=path) from None
        return path


def padded_batches(recordings: Sequence[FrameRecording], timesteps: int, batch_size: int):
    """Recordings batched longest first, each ``(indices, frames [S, B, ...] uint8)``.

    Only complete windows are kept (``S`` is a multiple of ``timesteps``); shorter
    recordings are padded with empty frames at the end, which cannot change their earlier
    outputs when the batch is run window by window with the state carried.
    """
    import torch

    order = sorted(range(len(recordings)), key=lambda i: -recordings[i].n_steps)
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        n_win = max(recordings[i].n_steps // timesteps for i in idx)
        shape = recordings[idx[0]].frames.shape[1:]
        batch = np.zeros((n_win * timesteps, len(idx), *shape), dtype=np.uint8)
        for j, i in enumerate(idx):
            n = (recordings[i].n_steps // timesteps) * timesteps
            batch[:n, j] = recordings[i].frames[:n]
        yield idx, torch.from_numpy(batch)


def run_model_on_frames(
    model,
    recordings: Sequence[FrameRecording],
    *,
    timesteps: int,
    device="cpu",
    batch_size: int = 16,
    amp: bool = False,
    chunk_windows: int = 1,
) -> list[np.ndarray]:
    """Per-timestep class probabilities ``[S, C]`` (float32) for each recording.

    Recordings are batched (:func:`padded_batches`) and run window by window with the
    state carried.  Only complete windows are run: the last ``S mod timesteps`` steps get
    NaN.  The model receives float32 of the stored (clipped) counts, as the pipeline feeds it.

    ``chunk_windows > 1`` hands the model that many windows per call.  The per-step
    outputs are the same (one call equals the split with carried state), so only the
    speed changes: fewer, larger calls, which is what a launch-bound GPU wants.
    """
    import torch

    if chunk_windows < 1:
        raise ValueError(f"chunk_windows must be >= 1, got {chunk_windows}")

    results: dict[int, np.ndarray] = {}
    was_training = model.training
    model.eval()
    try:
        for idx, x_all in padded_batches(recordings, timesteps, batch_size):
            probs = []
            state = None
            with torch.no_grad():
                n_steps = (len(x_all) // timesteps) * timesteps
                step = timesteps * chunk_windows
                for lo in range(0, n_steps, step):
                    x = x_all[lo : min(lo + step, n_steps)].to(device).float()
                    with torch.autocast(
                        device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp
                    ):
                        logits, state = model(x, state)
                    probs.append(torch.softmax(logits.float(), dim=-1).cpu())
            p = torch.cat(probs).numpy() if probs else np.zeros((0, len(idx), 1), np.float32)
            for j, i in enumerate(idx):
                s = recordings[i].n_steps
                full = np.full((s, p.shape[-1]), np.nan, dtype=np.float32)
                n = (s // timesteps) * timesteps
                full[:n] = p[:n, j]
                results[i] = full
    finally:
        model.train(was_training)
    return [results[i] for i in range(len(recordings))]


def score_recordings(
    recordings: Sequence[FrameRecording],
    probs: Sequence[np.ndarray],
    *,
    timesteps: int,
    class_names: Sequence[str],
    horizons_ms: Sequence[int] = DEFAULT_HORIZONS_MS,
    meta: dict | None = None,
) -> EvalReport:
    """Turn per-timestep probabilities into an :class:`EvalReport` (see the module docstring)."""
    n_cls = len(class_names)
    clips: list[ClipResult] = []
    step_hits = step_total = 0
    for rec, p in zip(recordings, probs):
        valid = ~np.isnan(p[:, 0]) if len(p) else np.zeros(0, bool)
        pred_step = (
            np.where(valid, np.nanargmax(np.where(valid[:, None], p, 0.0), axis=1), -1) if len(p) else p
        )
        lab = rec.labels.astype(np.int64)
        mask = (lab >= 0) & valid
        step_hits += int((pred_step[mask] == lab[mask]).sum())
        step_total += int(mask.sum())
        window_us = rec.step_us * timesteps
        n_win = rec.n_steps // timesteps
        win_end_us = rec.t0_us + (np.arange(n_win) + 1) * window_us
        win_pred = pred_step[(np.arange(n_win) + 1) * timesteps - 1] if n_win else np.zeros(0, np.int64)
        mid = rec.t0_us + np.arange(rec.n_steps) * rec.step_us + rec.step_us // 2
        for span in rec.spans:
            in_span = (mid >= span.start_us) & (mid < span.end_us) & valid
            if not in_span.any():
                continue
            predicted = int(np.argmax(p[in_span].mean(axis=0)))
            stream = {}
            for h in horizons_ms:
                t = span.start_us + int(h) * 1000
                k = int(np.searchsorted(win_end_us, t, side="right")) - 1  # last window ending <= t
                stream[int(h)] = bool(
                    k >= 0 and win_end_us[k] > span.start_us and win_pred[k] == span.class_id
                )
            w_in = np.flatnonzero((win_end_us > span.start_us) & (win_end_us <= span.end_us))
            latency = None
            if len(w_in) and win_pred[w_in[-1]] == span.class_id:
                wrong = np.flatnonzero(win_pred[w_in] != span.class_id)
                first_ok = w_in[0] if len(wrong) == 0 else w_in[wrong[-1] + 1]
                latency = (int(win_end_us[first_ok]) - span.start_us) / 1000.0
            clips.append(
                ClipResult(
                    rec.name, int(span.class_id), predicted, span.start_us, span.end_us, stream, latency
                )
            )
    confusion = np.zeros((n_cls, n_cls), dtype=np.int64)
    for c in clips:
        if 0 <= c.class_id < n_cls:
            confusion[c.class_id, c.predicted] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.diag(confusion) / confusion.sum(axis=0)
        recall = np.diag(confusion) / confusion.sum(axis=1)
    n = len(clips)
    lat = [c.latency_ms for c in clips if c.latency_ms is not None]
    return EvalReport(
        class_names=tuple(class_names),
        n_clips=n,
        clip_accuracy=float(np.mean([c.predicted == c.class_id for c in clips])) if n else float("nan"),
        stream_accuracy={
            int(h): (float(np.mean([c.stream_correct[int(h)] for c in clips])) if n else float("nan"))
            for h in horizons_ms
        },
        step_accuracy=step_hits / step_total if step_total else float("nan"),
        confusion=confusion,
        precision=precision.astype(float),
        recall=recall.astype(float),
        latency_ms_median=float(np.median(lat)) if lat else None,
        latency_ms_mean=float(np.mean(lat)) if lat else None,
        decided_fraction=len(lat) / n if n else 0.0,
        clips=tuple(clips),
        meta=dict(meta or {}),
    )


def evaluate_frames(
    model,
    recordings: Sequence[FrameRecording],
    *,
    timesteps: int,
    class_names: Sequence[str],
    device="cpu",
    batch_size: int = 16,
    amp: bool = False,
    horizons_ms: Sequence[int] = DEFAULT_HORIZONS_MS,
    meta: dict | None = None,
    chunk_windows: int = 1,
) -> EvalReport:
    """Run ``model`` over binned recordings and score it (windows of ``timesteps``).

    ``chunk_windows``: windows per model call (:func:`run_model_on_frames`); the score
    is that of ``timesteps``-step windows whatever it is.
    """
    probs = run_model_on_frames(
        model,
        recordings,
        timesteps=timesteps,
        device=device,
        batch_size=batch_size,
        amp=amp,
        chunk_windows=chunk_windows,
    )
    return score_recordings(
        recordings, probs, timesteps=timesteps, class_names=class_names, horizons_ms=horizons_ms, meta=meta
    )


def format_report(report: EvalReport) -> str:
    """A plain-text summary: headline figures, per-class table and the confusion matrix."""
    lines = [
        f"clips: {report.n_clips}   clip accuracy: {100 * report.clip_accuracy:.1f}%   "
        f"per-timestep accuracy: {100 * report.step_accuracy:.1f}%",
        "streaming accuracy after gesture start: "
        + ", ".join(f"{h} ms {100 * a:.1f}%" for h, a in report.stream_accuracy.items()),
    ]
    if report.latency_ms_median is not None:
        lines.append(
            f"latency to a correct decision: median {report.latency_ms_median:.0f} ms, mean "
            f"{report.latency_ms_mean:.0f} ms ({100 * report.decided_fraction:.0f}% of clips decided)"
        )
    width = max(len(n) for n in report.class_names)
    lines.append("")
    lines.append(f"{'class':<{width}}  support  precision  recall")
    for i, name in enumerate(report.class_names):
        pr, rc = report.precision[i], report.recall[i]
        lines.append(
            f"{name:<{width}}  {int(report.confusion[i].sum()):7d}  "
            f"{'   -   ' if not np.isfinite(pr) else f'{100 * pr:6.1f}%'}    "
            f"{'  -  ' if not np.isfinite(rc) else f'{100 * rc:5.1f}%'}"
        )
    lines.append("")
    lines.append("confusion (rows: true class, columns: predicted, in class order)")
    for i, name in enumerate(report.class_names):
        lines.append(f"{name:<{width}} " + " ".join(f"{v:4d}" for v in report.confusion[i]))
    return "\n".join(lines)


def save_confusion_png(report: EvalReport, path: str | os.PathLike, *, cell_px: int = 44) -> Path:
    """Draw the confusion matrix (row-normalised shading, counts written) as a PNG with OpenCV."""
    import cv2

    names = report.class_names
    n = len(names)
    label_w = 12 + 9 * max(len(s) for s in names)
    top = 40
    h, w = top + n * cell_px + 12 + label_w, label_w + n * cell_px + 12
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    conf = report.confusion.astype(float)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = f"clip accuracy {100 * report.clip_accuracy:.1f}% (n={report.n_clips})  rows: true, columns: predicted"
    cv2.putText(img, title, (8, 26), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        y0 = top + i * cell_px
        cv2.putText(img, names[i], (6, y0 + cell_px // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            x0 = label_w + j * cell_px
            shade = int(255 * (1 - norm[i, j]))
            color = (255, shade, shade) if i == j else (shade, shade, 255)
            cv2.rectangle(img, (x0, y0), (x0 + cell_px - 2, y0 + cell_px - 2), color, -1)
            if conf[i, j]:
                ink = (255, 255, 255) if norm[i, j] > 0.6 else (0, 0, 0)
                cv2.putText(
                    img,
                    str(int(conf[i, j])),
                    (x0 + 6, y0 + cell_px // 2 + 5),
                    font,
                    0.45,
                    ink,
                    1,
                    cv2.LINE_AA,
                )
    # column labels, written vertically below the grid
    y_base = top + n * cell_px + 8
    for j in range(n):
        patch = np.full((cell_px, label_w, 3), 255, dtype=np.uint8)
        cv2.putText(patch, names[j], (4, cell_px // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rot = cv2.rotate(patch, cv2.ROTATE_90_CLOCKWISE)  # [label_w, cell_px]
        x0 = label_w + j * cell_px
        img[y_base : y_base + label_w, x0 : x0 + cell_px] = np.minimum(
            img[y_base : y_base + label_w, x0 : x0 + cell_px], rot
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix, mode=target_mode(path)) as tmp:
            if not cv2.imwrite(str(tmp), img):
                raise ConfigError("could not write the PNG (unknown extension)", path=path)
    except OSError as exc:
        raise ConfigError(f"could not write the PNG: {exc.strerror or exc}", path=path) from None
    return path


def evaluate_checkpoint(
    checkpoint: str | os.PathLike | None = None,
    *,
    paths: Sequence[str | os.PathLike] = (),
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    split: str = "test",
    n_seeds: int | None = None,
    n_gestures: int = 4,
    device: str = "cpu",
    batch_size: int = 16,
    workers: int = 1,
    horizons_ms: Sequence[int] = DEFAULT_HORIZONS_MS,
) -> EvalReport:
    """Evaluate a checkpoint (``None`` = the bundled model) on labeled recordings or a dataset split.

    Parameters
    ----------
    paths : labeled recordings (files or folders, see :func:`dvsapp.core.train.datasets.labeled_recordings`);
        when empty, ``dataset``/``root``/``split`` name the data (default: synthetic test seeds)
    device : ``"cpu"``, ``"cuda"``, ``"auto"``
    """
    from dvsapp.core.model.checkpoint import resolve_checkpoint
    from dvsapp.core.recipe import load_with_recipe
    from dvsapp.core.train.datasets import bin_recording, build_frames, labeled_recordings
    from dvsapp.core.train.distributed import pick_device

    ckpt = resolve_checkpoint(checkpoint)
    dev = pick_device(device)
    model, meta, recipe = load_with_recipe(ckpt, map_location=dev)
    if paths:
        recs = labeled_recordings(list(paths))
        frames = [bin_recording(r, recipe) for r in recs]
        source = {"paths": [str(p) for p in paths]}
    else:
        name = dataset or "synthetic"
        frames = build_frames(
            name, root, split, recipe, workers=workers, n_seeds=n_seeds, n_gestures=n_gestures
        )
        source = {"dataset": name, "root": None if root is None else str(root), "split": split}
    return evaluate_frames(
        model,
        frames,
        timesteps=recipe.timesteps,
        class_names=model.config.class_names,
        device=dev,
        batch_size=batch_size,
        horizons_ms=horizons_ms,
        meta={"checkpoint": str(ckpt), **source, "recipe": recipe.to_dict()},
    )
