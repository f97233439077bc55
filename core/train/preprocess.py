"""Legacy name: how events become model input is :mod:`dvsapp.core.recipe` (``InputRecipe``).

Only :func:`bin_counts` remains here, for callers that want uint8 counts of events
already on the model's pixels: it is :meth:`dvsapp.core.recipe.InputRecipe.count`
(the pipeline's counting kernel) with the default clip of 255.  The ``"preprocess"``
entry of checkpoints written before the recipe is read by
:func:`dvsapp.core.recipe.recipe_from_metadata`.
"""

from __future__ import annotations

import numpy as np

from dvsapp.core.events import SensorSize

__all__ = ["bin_counts"]


def bin_counts(events: np.ndarray, size: SensorSize, *, t0_us: int, step_us: int, n_bins: int) -> np.ndarray:
    """Count events into ``n_bins`` consecutive bins of ``step_us``, starting at ``t0_us``.

    Bin ``k`` holds events with ``t0_us + k*step_us <= t < t0_us + (k+1)*step_us``;
    events outside ``[t0_us, t0_us + n_bins*step_us)`` are ignored.  Polarity
    channel 0 is OFF (``p=False``), channel 1 is ON; with ``size.polarities == 1``
    both polarities share one channel.

    Returns
    -------
    np.ndarray
        ``[n_bins, P, H, W]`` uint8 counts (saturating at 255).
    """
    from dvsapp.core.recipe import InputRecipe

    w, h, n_pol = int(size[0]), int(size[1]), int(size[2])
    if n_bins <= 0:
        return np.zeros((0, n_pol, h, w), dtype=np.uint8)
    recipe = InputRecipe(SensorSize(w, h, n_pol), int(step_us), int(n_bins))
    return recipe.count(events, t0_us=t0_us, n_steps=n_bins, dtype=np.uint8)
