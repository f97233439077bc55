"""Sweep the readout's memory (``head_decay``) of a trained checkpoint at inference.

The head integrator is an exponential moving average of the logits (Norse ``LICell``,
weight ``a`` on the newest step), so its decay can be chosen after training without
changing what the network computes: a smaller ``a`` averages the per-step logits over
longer.  The decay is chosen on the validation seeds and then reported on the held-out
test seeds (never both on the same data).

    OMP_NUM_THREADS=1 python benchmarks/readout_sweep.py --decays 0.5 0.3 0.2 0.1 --out sweep.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--decays", type=float, nargs="+", default=[0.5, 0.35, 0.25, 0.15, 0.1])
    ap.add_argument("--splits", nargs="+", default=["val", "test"])
    ap.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        default=None,
        help="window lengths to feed (default: the recipe's); the per-step outputs do not depend on it, "
        "only when a prediction is shown",
    )
    ap.add_argument("--seeds", type=int, default=None, help="synthetic sequences per split (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reversed", action="store_true", help="also score the clips played backwards")
    ap.add_argument("--reports", type=Path, default=None, help="write each run's JSON reports here")
    ap.add_argument(
        "--curve", type=Path, default=None, help="PNG: streaming accuracy against time, per decay"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from dvsapp.core.model import bundled_checkpoint
    from dvsapp.core.recipe import load_with_recipe
    from dvsapp.core.train.datasets import build_frames
    from dvsapp.core.train.evaluate import evaluate_frames
    from dvsapp.core.train.readout import with_head_decay
    from dvsapp.core.train.reverse import reverse_frame_recording
    from dvsapp.core.train.trainer import circle_accuracy

    ckpt = args.checkpoint or bundled_checkpoint()
    model, _, recipe = load_with_recipe(ckpt)
    rows = []
    print(
        f"# {ckpt.name}, torch {torch.__version__}, {args.threads} thread(s); trained head_decay "
        f"{model.config.head_decay}"
    )
    print(
        "| split | head_decay | T | clip | stream 100 / 200 / 500 / 1000 ms | step | circles | reversed: circles / clip |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for split in args.splits:
        t = time.perf_counter()
        frames = build_frames("synthetic", None, split, recipe, workers=args.workers, n_seeds=args.seeds)
        t_bin = time.perf_counter() - t
        for a, steps in [(a, n) for a in args.decays for n in args.timesteps or [recipe.timesteps]]:
            probe = with_head_decay(model, a)
            tag = f"decay{a:g}" + ("" if args.timesteps is None else f"_T{steps}")
            t = time.perf_counter()
            rep = evaluate_frames(
                probe,
                frames,
                timesteps=steps,
                class_names=model.config.class_names,
                horizons_ms=CURVE_MS,
            )
            curve = rep.stream_accuracy
            s = {h: curve[h] for h in (100, 200, 500, 1000)}
            rev = None
            if args.reversed:
                rev = evaluate_frames(
                    probe,
                    [reverse_frame_recording(r) for r in frames],
                    timesteps=steps,
                    class_names=model.config.class_names,
                    meta={"split": f"{split}:reversed", "head_decay": a, "timesteps": steps},
                )
            if args.reports:
                args.reports.mkdir(parents=True, exist_ok=True)
                rep.meta.update(split=split, head_decay=a, timesteps=steps, checkpoint=str(ckpt))
                rep.save_json(args.reports / f"{split}_{tag}_report.json")
                if rev is not None:
                    rev.save_json(args.reports / f"{split}_{tag}_reversed_report.json")
            rows.append(
                {
                    "split": split,
                    "head_decay": a,
                    "timesteps": steps,
                    "label": f"decay {a:g}, {steps} x {recipe.step_us // 1000} ms windows",
                    "n_clips": rep.n_clips,
                    "clip": rep.clip_accuracy,
                    "stream": {str(k): v for k, v in curve.items()},
                    "step": rep.step_accuracy,
                    "circles": circle_accuracy(rep),
                    "reversed_circles": None if rev is None else circle_accuracy(rev),
                    "reversed_clip": None if rev is None else rev.clip_accuracy,
                    "seconds": round(time.perf_counter() - t, 1),
                    "bin_seconds": round(t_bin, 1),
                }
            )
            print(
                f"| {split} ({rep.n_clips}) | {a:g} | {steps} | {rep.clip_accuracy:.1%} | "
                + " / ".join(f"{s[h]:.1%}" for h in sorted(s))
                + f" | {rep.step_accuracy:.1%} | {circle_accuracy(rep):.1%} | "
                + ("-" if rev is None else f"{circle_accuracy(rev):.1%} / {rev.clip_accuracy:.1%}")
                + " |",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    if args.curve:
        draw_curve(rows, args.curve, f"{ckpt.name}, {args.splits[-1]} split")


CURVE_MS = tuple(range(100, 1600, 100))


def draw_curve(rows: list[dict], path: Path, title: str) -> None:
    """Streaming accuracy against time after the gesture starts, one line per decay (OpenCV, 760x420)."""
    import cv2
    import numpy as np

    rows = [r for r in rows if r["split"] == rows[-1]["split"]]
    w, h, left, right, top, bottom = 820, 420, 60, 230, 40, 50
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    x_of = lambda ms: int(left + (ms - 0) / CURVE_MS[-1] * (w - left - right))  # noqa: E731
    y_of = lambda acc: int(top + (1 - acc) * (h - top - bottom))  # noqa: E731
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (180, 180, 180), 1)
    for acc in (0.25, 0.5, 0.75, 0.9):
        cv2.line(img, (left, y_of(acc)), (w - right, y_of(acc)), (225, 225, 225), 1)
        cv2.putText(img, f"{acc:.0%}", (8, y_of(acc) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for ms in (0, 500, 1000, 1500):
        cv2.putText(img, f"{ms}", (x_of(ms) - 10, h - bottom + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    colours = [(30, 30, 200), (200, 120, 20), (20, 150, 20), (150, 40, 150), (0, 140, 200), (90, 90, 90)]
    for k, r in enumerate(rows):
        c = colours[k % len(colours)]
        pts = np.array([(x_of(int(ms)), y_of(v)) for ms, v in r["stream"].items()], np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, c, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 3, c, -1, cv2.LINE_AA)
        name = r.get("label") or f"decay {r['head_decay']:g}"
        label = f"{name}: clip {r['clip']:.1%}"
        cv2.putText(img, label, (w - right + 8, top + 20 + 22 * k), font, 0.42, c, 1, cv2.LINE_AA)
    cv2.putText(
        img,
        f"streaming accuracy after gesture start - {title}",
        (left, 25),
        font,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    cv2.putText(
        img,
        "ms after the gesture starts (prediction at the end of the last whole window)",
        (left, h - 12),
        font,
        0.42,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


if __name__ == "__main__":
    main()
