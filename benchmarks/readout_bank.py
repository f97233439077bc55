"""A readout of several memories: is the 500 ms shortfall in the readout or in the network?

The shipped readout is one exponential moving average (``head_decay``) of the head's
logits.  A bank of ``K`` averages with different decays, each with its own 64 -> C
linear map, sums to ``v_t = sum_k W_k z_t^(k) + b_k c_t^(k)`` (``z^(k)``, ``c^(k)``: the
k-th average of the head spikes and of 1).  It can weigh recent evidence against
old evidence per class, so it can answer sooner after a gesture starts without
giving up the long average inside it.  With the network frozen, each bank is a
multinomial logistic regression on the concatenated averages (the same reasoning
as ``refit_head.py``):

1. the head spikes of the train / val / test recordings are computed once, streaming;
2. each bank's maps are fitted on the *training* seeds (L-BFGS, per-step cross entropy);
3. each bank is scored on the *validation* seeds and, for the record, on the held-out
   *test* seeds (nothing is chosen on the test).

    OMP_NUM_THREADS=1 python benchmarks/readout_bank.py --workers 2 --cache /tmp/frames \\
        --out docs/training/readout_bank.json

``--cache DIR`` keeps the binned recordings (``DIR/{split}_frames.h5``, about 2 GB) so a
second run skips the rendering (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refit_head import probabilities, smoothed, split_spikes  # noqa: E402

DEFAULT_BANKS = ("0.1", "0.2,0.05", "0.3,0.1,0.03", "0.5,0.2,0.1,0.05,0.025")


def bank_features(spikes: list[np.ndarray], decays: list[float]) -> list[np.ndarray]:
    """Per recording ``[S, K*(D+1)]``: the readout's average of ``[spikes, 1]`` for each decay, side by side."""
    per_decay = [smoothed(spikes, a) for a in decays]
    return [np.concatenate([z[i] for z in per_decay], axis=1) for i in range(len(spikes))]


def fit_bank(z: list[np.ndarray], frames, n_classes: int, *, l2: float, iters: int) -> np.ndarray:
    """``W [C, K*(D+1)]`` of the per-step multinomial logistic regression (labelled steps only), from zero."""
    import torch

    x = torch.from_numpy(
        np.concatenate([zi[np.asarray(r.labels[: len(zi)]) >= 0] for zi, r in zip(z, frames)])
    )
    y = torch.from_numpy(
        np.concatenate([np.asarray(r.labels[: len(zi)], np.int64) for zi, r in zip(z, frames)])
    )
    y = y[y >= 0]
    w = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    ap.add_argument("--banks", nargs="+", default=list(DEFAULT_BANKS), help="comma-separated decays per bank")
    ap.add_argument("--l2", type=float, default=1e-5)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None, help="folder for the binned recordings")
    ap.add_argument("--out", type=Path, required=True, help="JSON table")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from dvsapp.core.model import bundled_checkpoint
    from dvsapp.core.recipe import load_with_recipe
    from dvsapp.core.train.evaluate import score_recordings

    ckpt = args.checkpoint or bundled_checkpoint()
    model, _, recipe = load_with_recipe(ckpt)
    T, names = recipe.timesteps, model.config.class_names
    seeds = {"train": None, "val": None, "test": None}
    frames, spikes = split_spikes(model, recipe, seeds, workers=args.workers, cache=args.cache)

    rows = []
    print(
        "| decays | val clip | val 100 / 200 / 500 / 1000 ms | test clip | test 100 / 200 / 500 / 1000 ms |"
    )
    print("|---|---|---|---|---|")
    for bank in args.banks:
        decays = [float(a) for a in bank.split(",")]
        t0 = time.perf_counter()
        w = fit_bank(
            bank_features(spikes["train"], decays), frames["train"], len(names), l2=args.l2, iters=args.iters
        )
        row = {"decays": decays, "fit_s": round(time.perf_counter() - t0, 1)}
        for split in ("val", "test"):
            probs = probabilities(bank_features(spikes[split], decays), w, frames[split], T)
            rep = score_recordings(frames[split], probs, timesteps=T, class_names=names)
            row[split] = {
                "clip": rep.clip_accuracy,
                "stream": {str(k): v for k, v in rep.stream_accuracy.items()},
                "step": rep.step_accuracy,
            }
        rows.append(row)
        v, t = row["val"], row["test"]
        print(
            f"| {bank} | {v['clip']:.1%} | "
            + " / ".join(f"{v['stream'][h]:.1%}" for h in ("100", "200", "500", "1000"))
            + f" | {t['clip']:.1%} | "
            + " / ".join(f"{t['stream'][h]:.1%}" for h in ("100", "200", "500", "1000"))
            + " |",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"checkpoint": str(ckpt), "timesteps": T, "l2": args.l2, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
