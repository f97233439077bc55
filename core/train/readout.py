"""Choosing the readout's memory (``head_decay``) after training, on the validation data.

The head integrator (Norse ``LICell``) is an exponential moving average of the
per-timestep logits with weight ``a = head_decay`` on the newest step.  Changing
``a`` leaves every spike of the network as it was, so it can be chosen once the
weights are fixed: a smaller ``a`` averages the logits over longer, which steadies
the streaming prediction inside a gesture and delays the switch at its start.
:func:`choose_head_decay` scores candidate values on the validation recordings with
the trainer's own checkpoint score (:func:`checkpoint_score`)
and keeps the trained value unless another one scores higher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dvsapp.core.train.evaluate import evaluate_frames

DEFAULT_CANDIDATES: tuple[float, ...] = (0.5, 0.35, 0.25, 0.15, 0.1, 0.05)


def checkpoint_score(report) -> float:
    """The score that picks the best checkpoint and the readout: clip accuracy + streaming accuracy 500 ms in."""
    return report.clip_accuracy + report.stream_accuracy.get(500, 0.0)


def with_config(model, **changes):
    """A copy of ``model`` built from its config with ``changes`` (same weights; they must fit)."""
    from dvsapp.core.model import build_model

    new = build_model(dataclasses.replace(model.config, **changes))
    new.load_state_dict(model.state_dict())
    p = next(model.parameters())
    return new.to(device=p.device, dtype=p.dtype).train(model.training)


def with_head_decay(model, decay: float):
    """A copy of ``model`` whose config and head integrator use ``decay`` (same weights)."""
    return with_config(model, head_decay=float(decay))


def choose_head_decay(
    model,
    recordings,
    *,
    timesteps: int,
    class_names: Sequence[str],
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    device="cpu",
    batch_size: int = 32,
    amp: bool = False,
    chunk_windows: int = 1,
) -> tuple[float, list[dict]]:
    """The best ``head_decay`` on ``recordings`` and the table of every candidate scored.

    The trained value is always among the candidates and wins ties, so the result is
    never worse on these recordings than the model as trained.
    """
    trained = float(model.config.head_decay)
    values = [trained] + [float(a) for a in candidates if float(a) != trained]
    rows = []
    for a in values:
        probe = model if a == trained else with_head_decay(model, a)
        rep = evaluate_frames(
            probe,
            recordings,
            timesteps=timesteps,
            class_names=class_names,
            device=device,
            batch_size=batch_size,
            amp=amp,
            chunk_windows=chunk_windows,
        )
        rows.append(
            {
                "head_decay": a,
                "score": checkpoint_score(rep),
                "clip_accuracy": rep.clip_accuracy,
                "stream_accuracy": {str(k): v for k, v in rep.stream_accuracy.items()},
            }
        )
    best = max(rows, key=lambda r: (r["score"], r["head_decay"] == trained))
    return best["head_decay"], rows
