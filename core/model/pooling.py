"""Downsampling in the spiking patch splitting: max pooling of spikes or SPooling of the response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dvsapp.core.model.fused_pool import MaxPool3x3s2

__all__ = ["POOLINGS", "Pooling", "SpikingResponsePool"]


class SpikingResponsePool(nn.Module):
    """SPooling: downsample by aggregating the whole regional response.

    Max pooling of spikes keeps one bit per region (one spike and nine spikes look
    the same).  SPooling averages the membrane *response* (the BN output before the
    neuron) over the region, so the downstream neuron is charged in proportion to
    how much of the region responded; it then fires binary spikes as usual.

    ``[N, C, H, W] -> [N, C, ceil(H/2), ceil(W/2)]`` (3x3 window, stride 2, padding 1,
    padding not counted).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


@dataclass(frozen=True)
class Pooling:
    """How a patch-splitting stage downsamples: the module and where it sits.

    ``before_neuron``: pool the membrane response then fire (SPooling), or fire then
    pool the spikes (max pooling).
    """

    make: Callable[[], nn.Module]
    before_neuron: bool


POOLINGS: dict[str, Pooling] = {
    # nn.MaxPool2d(3, 2, 1); in training on CUDA, Triton kernels (DVSAPP_FUSED_POOL=0: off)
    "max": Pooling(MaxPool3x3s2, before_neuron=False),
    "spool": Pooling(SpikingResponsePool, before_neuron=True),
}
"""Pooling registry: ``ModelConfig.pooling`` -> :class:`Pooling`."""
