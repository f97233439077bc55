"""Spiking neurons: the Spike-driven Transformer's LIF as a Norse cell.

The neuron of the Spike-driven Transformer (multi-step LIF, ``tau = 2``, hard reset
to 0, detached reset) written with Norse's box-LIF parameters and state::

    v[t] = v[t-1] + dt * tau_mem_inv * (v_leak - v[t-1] + x[t])   (= 0.5 v + 0.5 x)
    z[t] = H(v[t] - v_th)            fires when v >= v_th  (v_th = 1, or 0.5 in attention)
    v[t] = (1 - z') v[t] + z' v_reset   with z' = z.detach()  (hard reset to 0)

The spike's surrogate gradient is Norse's ``tanh`` method with ``alpha = 2``:
``dz/dv = 1 - tanh(2 (v - v_th))**2 = 4 sigma(4 (v - v_th)) (1 - sigma(4 (v - v_th)))``,
the derivative of ``Sigmoid(4 x)`` used by the Spike-driven Transformer.

Norse's own ``lif_box_feed_forward_step`` fires only when ``v > v_th`` (strictly)
and does not detach its reset.  The Spike-driven Transformer fires at ``v >= v_th``,
which matters with binary inputs (``v = 0.5 * 0 + 0.5 * 2 = 1`` exactly), so
:func:`sdt_lif_step` is Norse's box-LIF step with the ``>=`` comparison; everything
else (parameters, state, surrogate function, reset hook) is Norse's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from norse.torch.functional.leaky_integrator import LIParameters, LIState
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters
from norse.torch.functional.threshold import heavi_tanh_fn
from norse.torch.module.leaky_integrator import LICell
from norse.torch.module.lif_box import LIFBoxCell

__all__ = [
    "LIFBoxFeedForwardState",
    "LIState",
    "SpikeDrivenLIFCell",
    "detached_hard_reset",
    "head_integrator",
    "lif_parameters",
    "sdt_lif_step",
]


def detached_hard_reset(
    z: torch.Tensor, v: torch.Tensor, v_reset: torch.Tensor, v_th: torch.Tensor
) -> torch.Tensor:
    """Norse ``reset_method``: hard reset to ``v_reset`` with the spike detached.

    ``v <- (1 - z') v + z' v_reset`` with ``z' = z.detach()``, so no gradient flows
    through the reset (the Spike-driven Transformer's ``detach_reset=True``).
    """
    z = z.detach()
    return (1 - z) * v + z * v_reset


def lif_parameters(
    v_th: float = 1.0,
    *,
    tau_mem_inv: float = 500.0,
    surrogate_alpha: float = 2.0,
    reset_method: Callable = detached_hard_reset,
) -> LIFBoxParameters:
    """Norse box-LIF parameters of the spike-driven neuron.

    Parameters
    ----------
    v_th : float
        Firing threshold (1.0; 0.5 for the attention neurons).
    tau_mem_inv : float
        Inverse membrane time constant in 1/s; with Norse's ``dt = 1 ms`` the
        default 500 gives ``dt * tau_mem_inv = 0.5`` (the SDT's ``tau = 2``).
    surrogate_alpha : float
        Steepness of the ``tanh`` surrogate (2 equals ``Sigmoid(4 x)``'s derivative).
    """
    return LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(float(tau_mem_inv)),
        v_leak=torch.as_tensor(0.0),
        v_th=torch.as_tensor(float(v_th)),
        v_reset=torch.as_tensor(0.0),
        method="tanh",
        alpha=float(surrogate_alpha),
        reset_method=reset_method,
    )


def sdt_lif_step(
    input_tensor: torch.Tensor,
    state: LIFBoxFeedForwardState,
    p: LIFBoxParameters,
    dt: float = 0.001,
) -> tuple[torch.Tensor, LIFBoxFeedForwardState]:
    """One Euler step of Norse's box LIF that fires at ``v >= v_th``.

    Parameters
    ----------
    input_tensor : Tensor [B, ...]
        Input current of this timestep.
    state : LIFBoxFeedForwardState
        Membrane potential ``v`` [B, ...] before the step.
    p : LIFBoxParameters
        Neuron parameters (see :func:`lif_parameters`).
    dt : float
        Integration step in seconds (Norse's default 1 ms).

    Returns
    -------
    spikes : Tensor [B, ...]
        0/1 in the input's dtype.
    state : LIFBoxFeedForwardState
        Membrane after the (hard, detached) reset.
    """
    dv = dt * p.tau_mem_inv * (input_tensor + p.v_leak - state.v)
    v_decayed = state.v + dv
    # z = 1 - H(v_th - v): fires at equality; the tanh surrogate is even, so the
    # gradient is that of H(v - v_th).
    z = 1 - heavi_tanh_fn(p.v_th - v_decayed, p.alpha)
    v_new = p.reset_method(z, v_decayed, p.v_reset, p.v_th)
    return z, LIFBoxFeedForwardState(v=v_new)


class SpikeDrivenLIFCell(LIFBoxCell):
    """Norse ``LIFBoxCell`` whose step is :func:`sdt_lif_step` (fires at ``v >= v_th``).

    Call it as ``spikes, state = cell(x [B, ...], LIFBoxFeedForwardState(v))``.
    """

    def __init__(self, p: LIFBoxParameters | None = None, dt: float = 0.001) -> None:
        super().__init__(p if p is not None else lif_parameters(), dt=dt)
        self.activation = sdt_lif_step


def head_integrator(decay: float, dt: float = 0.001) -> LICell:
    """Norse ``LICell`` that smooths the logits: ``v <- (1 - a) v + a x`` with ``a = decay``.

    The synaptic current decays completely within one step (``dt * tau_syn_inv = 1``),
    so the integrator is an exponential moving average of its input with weight
    ``a = dt * tau_mem_inv`` on the newest step; ``a = 1`` passes the logits through.
    """
    return LICell(
        LIParameters(
            tau_syn_inv=torch.as_tensor(1.0 / dt),
            tau_mem_inv=torch.as_tensor(float(decay) / dt),
            v_leak=torch.as_tensor(0.0),
        ),
        dt=dt,
    )
