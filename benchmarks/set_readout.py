"""Write a copy of a checkpoint with another readout memory (``head_decay``) or window, and its test figures.

The weights are unchanged; with ``--head-decay`` the head integrator's decay in the
stored config is replaced and recorded under ``readout`` (the key ``dvsapp train``
writes when it makes the choice itself).  ``--timesteps`` sets the window the pipeline
feeds (config and input recipe; recorded under ``window``): the network's per-step
outputs do not depend on it (one call == split with carried state), only how soon a
prediction is shown.  ``--test-report`` / ``--reversed-report`` /
``--bundled`` write the held-out figures into the provenance.

    python benchmarks/set_readout.py IN.safetensors OUT.safetensors --head-decay 0.1 \
        --note "chosen on validation seeds 100000-100039 by benchmarks/readout_sweep.py"
    python benchmarks/set_readout.py IN.safetensors OUT.safetensors --test-report test.json
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--head-decay", type=float, default=None, help="default: keep it (and its `readout` record)"
    )
    ap.add_argument(
        "--timesteps", type=int, default=None, help="timesteps per window (config and recipe); default: keep"
    )
    ap.add_argument("--window-note", default="", help="why this window (recorded under `window`)")
    ap.add_argument(
        "--provenance", type=Path, help="start provenance from this checkpoint's (a fine-tune's base)"
    )
    ap.add_argument("--note", default="")
    ap.add_argument("--test-report", type=Path, help="JSON report of the held-out test at the new decay")
    ap.add_argument("--reversed-report", type=Path, help="the same clips played backwards")
    ap.add_argument("--bundled", default=None, help="the bundled recording's result, as text")
    ap.add_argument("--command", action="append", default=[], help="a step to add to provenance.commands")
    ap.add_argument(
        "--field", action="append", default=[], help="KEY=JSON: set provenance[KEY] (e.g. epochs, device)"
    )
    args = ap.parse_args()

    import dataclasses
    import json

    from dvsapp.core.model import load_checkpoint, save_checkpoint
    from dvsapp.core.recipe import RECIPE_KEY, recipe_from_metadata
    from dvsapp.core.train.readout import with_config, with_head_decay

    model, meta = load_checkpoint(args.checkpoint)
    before = model.config.head_decay
    new = model
    if args.head_decay is not None:
        new = with_head_decay(model, args.head_decay)
        # the key `dvsapp train` writes when it chooses the decay itself (dvsapp.core.train.readout)
        meta["readout"] = {"head_decay_trained": before, "head_decay": args.head_decay, "note": args.note}
    if args.timesteps is not None and args.timesteps != new.config.timesteps:
        recipe = recipe_from_metadata(meta, config=new.config, path=args.checkpoint)
        meta["window"] = {
            # a window chosen before keeps the record of what the network was trained with
            "timesteps_trained": int(
                (meta.get("window") or {}).get("timesteps_trained", new.config.timesteps)
            ),
            "timesteps": args.timesteps,
            "note": args.window_note,
        }
        new = with_config(new, timesteps=args.timesteps)
        meta[RECIPE_KEY] = dataclasses.replace(recipe, timesteps=args.timesteps).to_dict()
        if isinstance(meta.get("preprocess"), dict):
            meta["preprocess"]["n_steps"] = args.timesteps
    prov = dict(meta.get("provenance") or {})
    if args.provenance:
        prov = {**dict(load_checkpoint(args.provenance)[1].get("provenance") or {}), **prov}
    if args.test_report:
        from types import SimpleNamespace

        from dvsapp.core.train.trainer import circle_accuracy

        def figures(path):
            rep = json.loads(path.read_text())
            return rep, circle_accuracy(SimpleNamespace(confusion=rep["confusion"]))

        rep, circ = figures(args.test_report)
        prov["test"] = {
            "clip_accuracy": rep["clip_accuracy"],
            "stream_accuracy": rep["stream_accuracy"],
            "step_accuracy": rep["step_accuracy"],
            "device": "CPU, float32",
        }
        prov["circles"] = {"forwards": round(circ, 4)}
        if args.reversed_report:
            rev, circ_rev = figures(args.reversed_report)
            prov["test_reversed"] = {"clip_accuracy": rev["clip_accuracy"]}
            prov["circles"]["reversed"] = round(circ_rev, 4)
    if args.bundled:
        prov["bundled_recording"] = args.bundled
    if args.command:
        prov["commands"] = [*prov.get("commands", []), *args.command]
    for item in args.field:
        key, _, value = item.partition("=")
        prov[key] = json.loads(value)
    meta["provenance"] = prov
    save_checkpoint(args.out, new, metadata=meta)
    print(
        f"{args.out}: head_decay {before} -> {new.config.head_decay}, "
        f"timesteps {model.config.timesteps} -> {new.config.timesteps}"
    )


if __name__ == "__main__":
    main()
