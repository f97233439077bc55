"""Multi-step spiking layer and the explicit per-call state it reads and writes.

Convolutions, batch norms and linear maps run batched over all timesteps
(``T`` folded into the batch); only the neuron dynamics step through time, one
Norse cell call per timestep.  Every :class:`LIFLayer` owns one slot in the
model's state tuple; the forward hands the slots around in a :class:`Run`
(a per-call scratchpad, never stored on a module).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dvsapp.core.model import fused_lif, fused_lif_pool
from dvsapp.core.model.neurons import LIFBoxFeedForwardState, SpikeDrivenLIFCell, lif_parameters
from dvsapp.core.model.taps import TapRecorder

__all__ = ["LIFLayer", "Run"]


@dataclass
class Run:
    """Per-forward scratchpad: the neuron states being advanced and the tap recorder.

    ``states[slot]`` is the current ``LIFBoxFeedForwardState`` of the layer with that slot.
    """

    states: list[LIFBoxFeedForwardState]
    taps: TapRecorder | None = None


class LIFLayer(nn.Module):
    """A population of spike-driven LIF neurons stepped over the leading time axis.

    Parameters
    ----------
    name : str
        Layer name used in firing-rate taps (e.g. ``"blocks.0.attn.q"``).
    feature_shape : tuple of int
        Shape of one sample at one timestep (``(C, H, W)`` or ``(D, N)``); the
        state's membrane is ``[B, *feature_shape]``.
    v_th : float
        Firing threshold.
    tau_mem_inv, surrogate_alpha, dt : float
        Neuron parameters (see :func:`dvsapp.core.model.neurons.lif_parameters`).
    """

    def __init__(
        self,
        name: str,
        feature_shape: tuple[int, ...],
        *,
        v_th: float = 1.0,
        tau_mem_inv: float = 500.0,
        surrogate_alpha: float = 2.0,
        dt: float = 0.001,
    ) -> None:
        super().__init__()
        self.name = name
        self.feature_shape = tuple(int(s) for s in feature_shape)
        self.cell = SpikeDrivenLIFCell(
            lif_parameters(v_th, tau_mem_inv=tau_mem_inv, surrogate_alpha=surrogate_alpha), dt=dt
        )
        self.slot = -1  # assigned by the model once all layers exist
        p = self.cell.p
        # the cell's constants as numbers, for the fused kernel (gain as the cell computes it)
        self._fused = dict(
            gain=float(dt * p.tau_mem_inv),
            v_leak=float(p.v_leak),
            v_th=float(p.v_th),
            v_reset=float(p.v_reset),
            alpha=float(p.alpha),
        )
        self._constants: dict = {}  # (dtype, device) -> the gradient-free steps' constants

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_shape={self.feature_shape}, slot={self.slot}"

    def initial_state(self, batch: int, device=None, dtype=None) -> LIFBoxFeedForwardState:
        """Membrane at rest: zeros ``[batch, *feature_shape]``."""
        return LIFBoxFeedForwardState(v=torch.zeros(batch, *self.feature_shape, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        """Step the neurons through ``x [T, B, *feature_shape]``; returns spikes of the same shape.

        On CUDA with Triton all steps run in one kernel, forward and backward
        (:mod:`dvsapp.core.model.fused_lif`, the cell's arithmetic; tested against it).
        Elsewhere, with gradients on (training) every step is the Norse cell; without
        them (``torch.no_grad`` / ``inference_mode``: streaming inference) the same step
        runs as :meth:`_inference_steps`, which gives bit-identical spikes and
        membranes with a third of the tensor operations (tested).
        """
        if fused_lif.fused_available(x, run.states[self.slot].v):
            out, v = fused_lif.lif_sequence(x, run.states[self.slot].v, **self._fused)
            state = LIFBoxFeedForwardState(v=v)
        elif torch.is_grad_enabled():
            state = run.states[self.slot]
            spikes = []
            for t in range(x.shape[0]):
                z, state = self.cell(x[t], state)
                spikes.append(z)
            out = spikes[0].unsqueeze(0) if len(spikes) == 1 else torch.stack(spikes)
        else:
            out, state = self._inference_steps(x, run.states[self.slot])
        run.states[self.slot] = state
        if run.taps is not None:
            run.taps.record_rate(self.name, out)
        return out

    def forward_max_pooled(self, x: torch.Tensor, run: Run, pool: nn.Module) -> torch.Tensor:
        """:meth:`forward` then ``pool`` (3x3 / stride 2 / padding 1 max pooling) of the spikes:
        ``x [T, B, C, H, W]`` -> pooled spikes ``[T, B, C, ceil(H/2), ceil(W/2)]``.

        In one pass (:mod:`dvsapp.core.model.fused_lif_pool`) where its ``fused_available``
        says so and no taps are recorded (they record the full-resolution spikes); else the
        two one after the other."""
        v0 = run.states[self.slot].v
        if run.taps is None and fused_lif_pool.fused_available(x, v0):
            out, v = fused_lif_pool.lif_max_pool(x, v0, **self._fused)
            run.states[self.slot] = LIFBoxFeedForwardState(v=v)
            return out
        return pool(self(x, run).flatten(0, 1)).unflatten(0, x.shape[:2])

    def _step_constants(self, dtype: torch.dtype, device: torch.device) -> tuple:
        """``(gain, v_th)`` for :meth:`_inference_steps`, as 0-dim tensors.

        For float32 and float64 membranes, tensors of that dtype holding the cell's float32
        values (exact in both; a Python number would be wrapped and converted on every
        call); for other dtypes the cell's own float32 tensors, which the arithmetic then
        casts exactly as in the cell.
        """
        key = (dtype, device)
        got = self._constants.get(key)
        if got is None:
            with torch.inference_mode(False):
                if dtype in (torch.float32, torch.float64):
                    c = self._fused
                    got = tuple(torch.tensor(c[k], dtype=dtype, device=device) for k in ("gain", "v_th"))
                else:
                    p = self.cell.p
                    got = ((self.cell.dt * p.tau_mem_inv).to(device), p.v_th.to(device))
            self._constants[key] = got
        return got

    def _inference_steps(
        self, x: torch.Tensor, state: LIFBoxFeedForwardState
    ) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
        """:func:`dvsapp.core.model.neurons.sdt_lif_step` over time, for the forward pass only.

        Same arithmetic in the same order for the membrane (``v + dt*tau_mem_inv *
        (x + v_leak - v)``, each product and sum rounded as the cell rounds it; a zero
        ``v_leak`` is left out, which can change only the sign of a zero); ``v >= v_th``
        equals the cell's ``1 - H(v_th - v)`` (a rounded difference is zero only for
        equal operands and keeps its sign); the hard reset ``(1 - z) v + z v_reset`` is
        ``v - v z (+ v_reset z)``, exact for ``z`` in {0, 1}.  The membrane is updated in
        place in one copy of the state and the spikes are written straight into the
        output: five tensor operations a step, no surrogate, no autograd bookkeeping (only
        for gradient-free calls).
        """
        c = self._fused  # the cell's constants as Python numbers (gain rounded as the cell's)
        dtype = torch.promote_types(x.dtype, state.v.dtype)
        gain, v_th = self._step_constants(dtype, x.device)
        fast_dtype = dtype in (torch.float32, torch.float64)
        v = state.v.to(dtype).expand(x.shape[1:]).clone()
        drive = torch.empty_like(v)
        out = torch.empty_like(x, dtype=dtype)
        for t in range(x.shape[0]):
            if c["v_leak"] == 0.0:
                torch.sub(x[t], v, out=drive)
            else:
                torch.add(x[t], c["v_leak"], out=drive).sub_(v)
            if fast_dtype:
                v.add_(drive.mul_(gain))
            else:  # half precision: the cell's own out-of-place ops (in place, a float32 scalar rounds otherwise)
                v = v + gain * drive
            z = torch.ge(v, v_th, out=out[t])
            v.addcmul_(v, z, value=-1)
            if c["v_reset"] != 0.0:
                v.add_(z, alpha=c["v_reset"])
        return out, LIFBoxFeedForwardState(v=v)
