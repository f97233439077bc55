"""``TapRecorder``: what the GUI shows as "attention neuron firing".

Pass a recorder as ``model(frames, state, taps=recorder)``; the forward fills it
and its return type does not change.  The recorder keeps small tensors on the CPU:

- ``attention[block][name]`` for ``name`` in ``q, k, v, out``: the fraction of each
  head's channels that spiked, per timestep, sample, head and token,
  ``float16 [T, B, heads, N]`` (``N = rows * cols`` of :attr:`token_hw`, row-major);
- ``rates[layer]``: mean firing rate (spikes per neuron per timestep) of every
  spiking layer, in forward order;
- ``attention_ops[block]``: synaptic-operation counts of the attention's spike
  mixing, used by :func:`dvsapp.core.model.energy.estimate_energy`.

A recorder accumulates one forward call; use a fresh one (or :meth:`clear`) per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["AttentionOps", "TapRecorder"]

TAP_NAMES = ("q", "k", "v", "out")


@dataclass(frozen=True)
class AttentionOps:
    """Operation counts of one attention's spike mixing, per sample, summed over timesteps.

    ``spiking_acs`` are accumulates the spike-driven version performs (additions
    triggered by spikes; masks are free), ``ann_macs`` the multiply-accumulates of
    vanilla ``softmax(Q K^T) V`` attention on the same ``N`` tokens and ``D`` channels.
    """

    spiking_acs: float
    ann_macs: float


@dataclass
class TapRecorder:
    """Collects attention spikes and firing rates during one forward call.

    Parameters
    ----------
    dtype : torch.dtype
        Storage dtype of the attention taps (``float16`` keeps them small).
    keep_attention : bool
        Record the per-head, per-token attention spikes (rates are always recorded).
    """

    dtype: torch.dtype = torch.float16
    keep_attention: bool = True
    token_hw: tuple[int, int] | None = None
    attention: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    attention_ops: dict[int, AttentionOps] = field(default_factory=dict)

    def clear(self) -> None:
        self.attention.clear()
        self.rates.clear()
        self.attention_ops.clear()

    def record_rate(self, layer: str, spikes: torch.Tensor) -> None:
        """Store the mean firing rate of ``spikes`` (any shape) under ``layer``."""
        self.rates[layer] = float(spikes.detach().float().mean())

    def record_attention(self, block: int, name: str, spikes: torch.Tensor, heads: int) -> None:
        """Store ``spikes [T, B, D, N]`` as the per-head firing fraction ``[T, B, heads, N]``."""
        if not self.keep_attention:
            return
        t, b, d, n = spikes.shape
        per_head = spikes.detach().float().reshape(t, b, heads, d // heads, n).mean(dim=3)
        self.attention.setdefault(block, {})[name] = per_head.to("cpu", self.dtype)

    def record_ops(self, block: int, ops: AttentionOps) -> None:
        self.attention_ops[block] = ops

    def grid(self, block: int, name: str) -> torch.Tensor:
        """The tap ``name`` of ``block`` reshaped to the token grid ``[T, B, heads, rows, cols]``."""
        tap = self.attention[block][name]
        if self.token_hw is None:
            raise ValueError("token_hw is unknown: the recorder has not seen a forward call")
        return tap.reshape(*tap.shape[:3], *self.token_hw)
