"""Bin the synthetic train / validation / test splits into a frame cache before several runs share it.

    python benchmarks/warm_cache.py --cache /tmp/cache --workers 16 --stretch 0.7,1.3 --seed 0 [--preset tiny]

The cache keys are the ones ``dvsapp train --cache`` uses, so runs with the same
preset, step, stretch and seed find their frames ready.
"""

from __future__ import annotations

import argparse
import time

from dvsapp.core.train.distributed import DistInfo
from dvsapp.core.train.trainer import TrainConfig, _frames, build_model, preprocess_for


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--stretch", default="1,1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--val-seeds", type=int, default=None, help="validation sequences (as dvsapp train --val-seeds)"
    )
    args = ap.parse_args(argv)
    lo, hi = (float(v) for v in args.stretch.split(","))
    cfg = TrainConfig(
        preset=args.preset,
        cache_dir=args.cache,
        workers=args.workers,
        time_stretch=(lo, hi),
        seed=args.seed,
        n_val_seeds=args.val_seeds,
    )
    pre = preprocess_for(build_model(cfg).config)
    info = DistInfo(0, 1, 0, "cpu")
    for split, n in (("train", cfg.n_train_seeds), ("val", cfg.n_val_seeds), ("test", cfg.n_test_seeds)):
        t0 = time.perf_counter()
        frames = _frames(cfg, split, pre, n, info)
        print(
            f"{split}: {len(frames)} recordings, {sum(r.n_steps for r in frames)} steps, {time.perf_counter() - t0:.1f} s"
        )


if __name__ == "__main__":
    main()
