"""The inference twin: a copy of a trained model laid out for gradient-free streaming on the CPU.

At batch 1 on a CPU the spiking transformer's cost is mostly per-operation overhead,
not arithmetic: a 1x1 convolution over 64 tokens runs oneDNN's convolution path at a
fraction of a plain matrix product's speed, every batch norm is a separate pass, and
max pooling of spikes computes indices nobody reads.  :func:`inference_twin` builds a
copy of the model (its own parameters; the original is untouched) with:

- every batch norm folded into the convolution or projection before it
  (``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``,
  the running statistics of eval mode; torch's ``fuse_conv_bn_weights``);
- the 1x1 token projections (Q, K, V, the attention's output projection, the MLP) as
  :class:`Pointwise` matrix products, and Q, K and V as one product of their stacked
  weights whose three neuron populations step as one (:class:`StackedLIF`);
- the 3x3 stride-2 max pooling as :class:`SpikeMaxPool`, a separable maximum over
  strided views of the rows then the columns, without the indices ``max_pool2d`` computes;
- the patch-splitting convolutions' weights channels-last (so their outputs, the
  membranes and the pooling are too, up to the tokens).

The neurons, their state (slots, shapes, names), the head, the integrator and the taps
are the model's own, so the twin takes and returns the same :class:`ModelState` and
records the same taps.  Folding rounds differently from the batch norm, so membranes
differ in the last bits; the spikes are the same unless a membrane lies within that
rounding of a threshold (tested in float64, where no membrane of a real recording comes
that close).  Running a sequence in one call or split with the state carried gives the
same result bit for bit, as for the model.
"""

from __future__ import annotations

import copy
from itertools import chain

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from dvsapp.core.model.attention import SpikingAttention
from dvsapp.core.model.fused_pool import MaxPool3x3s2
from dvsapp.core.model.layers import LIFLayer, Run
from dvsapp.core.model.network import SpikingTransformer
from dvsapp.core.model.neurons import LIFBoxFeedForwardState

__all__ = ["Pointwise", "SpikeMaxPool", "StackedLIF", "TwinCache", "inference_twin"]


class Pointwise(nn.Module):
    """A 1x1 convolution over tokens as a matrix product: ``[B', C_in, N] -> [B', C_out, N]``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().reshape(weight.shape[0], -1).contiguous())
        self.register_buffer("bias", bias.detach().reshape(-1, 1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weight, x).add_(self.bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


def _max3s2(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``out[i] = max(x[2i-1], x[2i], x[2i+1])`` along ``dim`` (negative) over the indices that exist."""

    def along(s: slice) -> tuple:
        return (Ellipsis, s) + (slice(None),) * (-1 - dim)

    even, odd = x[along(slice(0, None, 2))], x[along(slice(1, None, 2))]
    if x.shape[dim] % 2 == 0:
        out = torch.maximum(even, odd)
        tail = out[along(slice(1, None))]
        torch.maximum(tail, odd[along(slice(None, -1))], out=tail)
    else:
        out = even.clone()
        for part in (out[along(slice(None, -1))], out[along(slice(1, None))]):
            torch.maximum(part, odd, out=part)
    return out


class SpikeMaxPool(nn.Module):
    """``max_pool2d(x, 3, stride=2, padding=1)`` as a separable maximum over strided views.

    Padding only drops window elements, so each output is the maximum of the rows
    ``2i-1, 2i, 2i+1`` that exist, then likewise over the columns: four or five
    elementwise maxima on strided views, no indices, no padded copy.  (Exact for any
    input; the index-free form is what makes it cheaper than ``max_pool2d`` on a CPU.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _max3s2(_max3s2(x, -2), -1)


class StackedLIF(nn.Module):
    """Q's, K's and V's neurons stepped as one population over their stacked input.

    ``forward(x [T, B, 3D, N], run) -> spikes [T, B, 3D, N]``.  The three layers keep
    their own state slots and firing-rate taps: their membranes are stacked for the
    call and handed back as three views.  The layers must share their constants.
    """

    def __init__(self, layers: tuple[LIFLayer, ...]) -> None:
        super().__init__()
        if any(layer._fused != layers[0]._fused for layer in layers):
            raise ValueError("stacked neurons must share their constants")
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        first = self.layers[0]
        widths = [layer.feature_shape[0] for layer in self.layers]
        v = torch.cat([run.states[layer.slot].v for layer in self.layers], dim=1)
        out, state = first._inference_steps(x, LIFBoxFeedForwardState(v=v))
        for layer, v_part, spikes in zip(
            self.layers, state.v.split(widths, dim=1), out.split(widths, dim=2), strict=True
        ):
            run.states[layer.slot] = LIFBoxFeedForwardState(v=v_part)
            if run.taps is not None:
                run.taps.record_rate(layer.name, spikes)
        return out


def _folded(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of ``BN(conv(x))`` with the batch norm's running statistics (torch's own fold)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics cannot be folded")
    w, b = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return w.detach(), b.detach()


def _fold_conv2d(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` into ``conv`` in place (``conv`` gains a bias), the weight channels-last.

    Channels-last weights run oneDNN's NHWC convolution, 2-4% of a window faster on a
    2-core AVX2 machine; outputs, membranes (``initial_state`` follows the stem's weight)
    and pooling then stay channels-last up to the tokens.
    """
    w, b = _folded(conv, bn)
    conv.weight = nn.Parameter(w.contiguous(memory_format=torch.channels_last), requires_grad=False)
    conv.bias = nn.Parameter(b, requires_grad=False)


def _pointwise(seq: nn.Sequential) -> Pointwise:
    """``Sequential(Conv1d(k=1), BatchNorm1d)`` as one :class:`Pointwise`."""
    return Pointwise(*_folded(*seq))


@torch.no_grad()
def inference_twin(model: SpikingTransformer) -> SpikingTransformer:
    """A copy of ``model`` (eval mode) with batch norms folded and the CPU's cheaper operations.

    Parameters
    ----------
    model : SpikingTransformer
        Read in eval mode: its batch norms' running statistics are folded.

    Returns
    -------
    SpikingTransformer
        For gradient-free calls only; parameters do not require gradients.  Same
        signature, state and taps as ``model``.
    """
    twin = copy.deepcopy(model).eval()
    sps = twin.sps
    for stage in sps.stages:
        _fold_conv2d(stage.conv, stage.bn)
        stage.bn = nn.Identity()
        if isinstance(stage.pool, MaxPool3x3s2):
            stage.pool = SpikeMaxPool()
    _fold_conv2d(sps.rpe_conv, sps.rpe_bn)
    sps.rpe_bn = nn.Identity()
    for block in twin.blocks:
        attn = block.attn
        if isinstance(attn, SpikingAttention):
            parts = [_folded(*seq) for seq in (attn.q, attn.k, attn.v)]
            attn.qkv = Pointwise(torch.cat([w for w, _ in parts]), torch.cat([b for _, b in parts]))
            attn.q = attn.k = attn.v = None
            attn.qkv_lif = StackedLIF((attn.q_lif, attn.k_lif, attn.v_lif))
            attn.proj = _pointwise(attn.proj)
        mlp = block.mlp
        mlp.fc1 = _pointwise(mlp.fc1)
        mlp.fc2 = _pointwise(mlp.fc2)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class TwinCache:
    """The inference twin of a model, rebuilt when the model or its tensors change.

    The key is the model object and every parameter's and buffer's storage and version
    counter (bumped by in-place updates: an optimizer step, ``load_state_dict``), so a
    cast, a move, a training step or new weights give a new twin.  The tensors are
    listed once per model, so checking the key costs a few attribute reads per tensor.
    """

    def __init__(self) -> None:
        self._model: nn.Module | None = None
        self._tensors: list[torch.Tensor] = []
        self._key: tuple | None = None
        self._twin: SpikingTransformer | None = None

    def _state_key(self) -> tuple:
        return tuple((t.data_ptr(), t._version) for t in self._tensors)

    def get(self, model: SpikingTransformer) -> SpikingTransformer:
        if model is not self._model:
            self._model, self._twin = model, None
            self._tensors = list(chain(model.parameters(), model.buffers()))
        key = self._state_key()
        if self._twin is None or key != self._key:
            self._twin, self._key = inference_twin(model), key
        return self._twin
