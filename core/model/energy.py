"""Energy estimate from measured firing rates (the Spike-driven Transformer's method).

For every synaptic layer (convolution, linear) with ``FLOPs`` multiply-accumulates
per sample and timestep, and input firing rate ``r`` (fraction of non-zero inputs)::

    SOPs = T * r * FLOPs                 synaptic operations per window (accumulates)
    E    = E_AC * SOPs                   E_AC  = 0.9 pJ (45 nm, 32-bit float add)
    E_first = E_MAC * T * FLOPs          the first layer sees event counts: MACs, E_MAC = 4.6 pJ

The attention's spike mixing adds its own accumulates (see
:meth:`dvsapp.core.model.attention.SpikingAttention.count_ops`).  The ANN reference is the
same network with every layer a MAC layer (``E_MAC * T * FLOPs``) and vanilla
``softmax(Q K^T) V`` attention (``2 N^2 D`` MACs per timestep).  All figures are per
window (``T`` timesteps) and per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dvsapp.core.model.network import SpikingTransformer
from dvsapp.core.model.taps import TapRecorder

__all__ = ["E_AC_PJ", "E_MAC_PJ", "EnergyReport", "LayerEnergy", "estimate_energy", "synaptic_ops"]

E_AC_PJ = 0.9
"""Energy of one accumulate (45 nm CMOS), picojoules."""
E_MAC_PJ = 4.6
"""Energy of one multiply-accumulate (45 nm CMOS), picojoules."""


def synaptic_ops(flops: float, rate: float, timesteps: int) -> float:
    """``SOPs = T * rate * FLOPs``."""
    return float(timesteps) * float(rate) * float(flops)


@dataclass(frozen=True)
class LayerEnergy:
    """One synaptic layer's cost per window and sample.

    Attributes
    ----------
    name : str
        Module path (e.g. ``sps.stages.1.conv``) or ``blocks.i.attn.mix``.
    flops : float
        MACs per sample and timestep of the dense layer.
    rate : float
        Measured input firing rate (1.0 for the first layer, counted as MACs).
    ops : float
        SOPs (accumulates) per window, or MACs for the first layer.
    energy_pj : float
        Spiking energy per window.
    ann_energy_pj : float
        The same layer as a non-spiking MAC layer.
    is_mac : bool
        True for the first layer.
    """

    name: str
    flops: float
    rate: float
    ops: float
    energy_pj: float
    ann_energy_pj: float
    is_mac: bool = False


@dataclass(frozen=True)
class EnergyReport:
    """Energy per window (``timesteps`` steps) and sample; see the module docstring."""

    timesteps: int
    attention: str
    layers: tuple[LayerEnergy, ...]
    attention_layers: tuple[LayerEnergy, ...]
    firing_rates: dict[str, float] = field(default_factory=dict)

    @property
    def total_sops(self) -> float:
        """Accumulates of all spiking layers and attention mixing (first layer excluded)."""
        return sum(layer.ops for layer in (*self.layers, *self.attention_layers) if not layer.is_mac)

    @property
    def energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in (*self.layers, *self.attention_layers))

    @property
    def ann_energy_pj(self) -> float:
        return sum(layer.ann_energy_pj for layer in (*self.layers, *self.attention_layers))

    @property
    def energy_ratio(self) -> float:
        """ANN energy / spiking energy for the whole network."""
        return self.ann_energy_pj / self.energy_pj if self.energy_pj else float("inf")

    @property
    def attention_energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.attention_layers)

    @property
    def attention_ann_energy_pj(self) -> float:
        return sum(layer.ann_energy_pj for layer in self.attention_layers)

    @property
    def attention_ratio(self) -> float:
        """Vanilla attention energy / spike-driven attention energy (the attention mixing alone)."""
        e = self.attention_energy_pj
        return self.attention_ann_energy_pj / e if e else float("inf")

    def to_dict(self) -> dict:
        return {
            "timesteps": self.timesteps,
            "attention": self.attention,
            "total_sops": self.total_sops,
            "energy_uj": self.energy_pj * 1e-6,
            "ann_energy_uj": self.ann_energy_pj * 1e-6,
            "energy_ratio": self.energy_ratio,
            "attention_energy_nj": self.attention_energy_pj * 1e-3,
            "attention_ann_energy_nj": self.attention_ann_energy_pj * 1e-3,
            "attention_ratio": self.attention_ratio,
            "layers": [vars(layer) for layer in (*self.layers, *self.attention_layers)],
            "firing_rates": dict(self.firing_rates),
        }


def _dense_flops(module: nn.Module, out: torch.Tensor) -> float:
    """MACs of ``module`` per sample (first axis of ``out``)."""
    per_sample_out = out.numel() / out.shape[0]
    if isinstance(module, nn.Linear):
        return per_sample_out * module.in_features
    k = 1
    for s in module.kernel_size:
        k *= s
    return per_sample_out * (module.in_channels // module.groups) * k


@torch.no_grad()
def estimate_energy(model: SpikingTransformer, frames: torch.Tensor) -> EnergyReport:
    """Run ``frames`` through ``model`` from rest and estimate its energy per window.

    Parameters
    ----------
    model : SpikingTransformer
        Used as is (call ``model.eval()`` first for inference statistics).
    frames : Tensor or array, [T, B, P, H, W] or [T, P, H, W]
        One window (moved to the model's device and dtype); rates are averaged over the batch.

    Returns
    -------
    EnergyReport
        Per-layer SOPs and energies per window and sample, totals, the ANN
        reference, and the attention-alone comparison.
    """
    frames = torch.as_tensor(frames)
    if frames.dim() == 4:
        frames = frames.unsqueeze(1)
    param = next(model.parameters())
    frames = frames.to(param.device, param.dtype)
    timesteps = int(frames.shape[0])
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    measured: list[tuple[str, float, float, bool]] = []

    def hook(name: str, module: nn.Module):
        def fn(mod, inputs, output):
            x = inputs[0]
            rate = float(torch.count_nonzero(x)) / x.numel()
            flops = _dense_flops(mod, output)
            measured.append((name, flops, rate, mod is first))

        return fn

    handles = [
        module.register_forward_hook(hook(name, module))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))
    ]
    taps = TapRecorder(keep_attention=False)
    try:
        model(frames, None, taps=taps)
    finally:
        for h in handles:
            h.remove()
    layers = []
    for name, flops, rate, is_first in measured:
        ann = E_MAC_PJ * timesteps * flops
        if is_first:
            layers.append(LayerEnergy(name, flops, 1.0, timesteps * flops, ann, ann, is_mac=True))
        else:
            ops = synaptic_ops(flops, rate, timesteps)
            layers.append(LayerEnergy(name, flops, rate, ops, E_AC_PJ * ops, ann))
    attention_layers = []
    for block, ops in sorted(taps.attention_ops.items()):
        acs = ops.spiking_acs
        attention_layers.append(
            LayerEnergy(
                f"blocks.{block}.attn.mix",
                ops.ann_macs / timesteps,
                acs / ops.ann_macs if ops.ann_macs else 0.0,
                acs,
                E_AC_PJ * acs,
                E_MAC_PJ * ops.ann_macs,
            )
        )
    return EnergyReport(
        timesteps=timesteps,
        attention=model.config.attention,
        layers=tuple(layers),
        attention_layers=tuple(attention_layers),
        firing_rates=dict(taps.rates),
    )
