"""The spiking transformer: patch splitting, encoder blocks, head, explicit state.

Data flow for ``frames [T, B, P, H, W]`` (event counts per timestep)::

    SPS:    4 stages conv3x3-BN-LIF, channels D/8 -> D/4 -> D/2 -> D, with 2x downsampling
            (max pooling of spikes, or SPooling of the membrane response) in the first
            log2(patch) stages; the last stage keeps the membrane x_feat; a relative
            position branch adds BN(conv3x3(SN(x_feat))) to it (membrane shortcut)
            -> tokens X [T, B, D, N]
    blocks: X <- X + Attn(X);  X <- X + MLP(X)      sums on membranes; each branch
            starts with a LIF, so every conv / linear sees binary spikes
    head:   mean over tokens -> LIF -> linear -> logits [T, B, C] -> Norse LICell
            (leaky integrator over timesteps and windows) -> smoothed logits [T, B, C]

Convolutions and batch norms run over all timesteps at once (``T`` folded into
the batch); only the neurons step through time.  The state of every neuron and
of the integrator is a :class:`ModelState` passed in and returned, never stored
on a module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dvsapp.core.errors import ConfigError
from dvsapp.core.model.attention import ATTENTIONS
from dvsapp.core.model.config import ModelConfig
from dvsapp.core.model.conv_wgrad import Conv3x3
from dvsapp.core.model.fused_pool import MaxPool3x3s2
from dvsapp.core.model.layers import LIFLayer, Run
from dvsapp.core.model.neurons import LIFBoxFeedForwardState, LIState, head_integrator
from dvsapp.core.model.pooling import POOLINGS, SpikingResponsePool
from dvsapp.core.model.taps import TapRecorder

__all__ = [
    "POOLINGS",
    "ModelState",
    "SpikingResponsePool",
    "SpikingTransformer",
    "build_model",
]


# ---------------------------------------------------------------------- state
class ModelState(NamedTuple):
    """Explicit state of a :class:`SpikingTransformer` (a pytree of Norse states).

    Attributes
    ----------
    neurons : tuple of LIFBoxFeedForwardState
        Membrane ``v [B, *feature_shape]`` of every spiking layer, in forward order.
    head : LIState
        The output integrator's ``v [B, C]`` (smoothed logits) and ``i [B, C]``.
    inputs : Tensor [B, k-1, P, H, W]
        The last ``temporal_kernel - 1`` input frames, oldest first (empty for ``k = 1``):
        the motion stem's memory.
    """

    neurons: tuple[LIFBoxFeedForwardState, ...]
    head: LIState
    inputs: torch.Tensor

    def detach(self) -> ModelState:
        """The same values cut from the autograd graph (truncated BPTT)."""
        return self.map(lambda t: t.detach())

    def to(self, device=None, dtype=None) -> ModelState:
        """Moved to ``device`` and/or cast to ``dtype``."""
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> ModelState:
        """Apply ``fn`` to every tensor."""
        return ModelState(
            neurons=tuple(LIFBoxFeedForwardState(v=fn(s.v)) for s in self.neurons),
            head=LIState(v=fn(self.head.v), i=fn(self.head.i)),
            inputs=fn(self.inputs),
        )

    @property
    def batch_size(self) -> int:
        return int(self.head.v.shape[0])


# ---------------------------------------------------------------- SPS
def _half_precision(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` runs in half precision (a half ``x``, or autocast on)."""
    return x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type)


class StemConv(nn.Conv2d):
    """The first 3x3 convolution; on CUDA in half precision (autocast) its input channels are
    padded with zeros to a multiple of 8.

    Zero channels added to the input and the kernel leave the result as it is and give cuDNN
    a channel count it has tensor-core kernels for: in bf16 the 2-channel (ON/OFF)
    convolution fell back to a generic kernel, and padding (with channels-last training)
    took bf16 training from 608 to 712 samples/s on an H200.  In float32 (TF32) the
    unpadded convolution is the faster one (H100, ``sdt-2-256`` at batch 16 x T 16:
    forward 0.35 against 0.59 ms, weight gradient 0.70 against 1.25 ms; compiled fp32
    training 373 against 366 samples/s; ``benchmarks/gpu_convs.py``), so float32 runs it
    unpadded.  Parameters, hooks and counts are those of the plain ``nn.Conv2d``.
    """

    # class-wide: the multiple the channels are padded to on CUDA in half precision, 1 for
    # none (benchmarks/gpu_speed.py --stem-pad-to / --no-stem-pad measure the others)
    pad_to = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and self.in_channels % self.pad_to and _half_precision(x):
            return self.padded(x)
        return super().forward(x)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """The padded computation, on any device (what runs on CUDA)."""
        # F.pad's pairs run from the last dim: W, H, C
        widen = (0, 0, 0, 0, 0, (-self.in_channels) % self.pad_to)
        return F.conv2d(F.pad(x, widen), F.pad(self.weight, widen), self.bias, self.stride, self.padding)


class _Stage(nn.Module):
    """conv3x3 - BN - [pool] - LIF - [pool]; without a neuron it returns the membrane."""

    def __init__(self, cfg: ModelConfig, index: int, c_in: int, c_out: int, hw: tuple[int, int]) -> None:
        super().__init__()
        if index == 0:
            self.conv = StemConv(c_in, c_out, kernel_size=3, padding=1, bias=False)
        else:  # spikes in: the weight gradient may be the Triton kernel's (conv_wgrad.py, opt-in)
            self.conv = Conv3x3(c_in, c_out)
        self.bn = nn.BatchNorm2d(c_out)
        pooled = cfg.pool_pattern[index]
        spec = POOLINGS[cfg.pooling]
        self.pool = spec.make() if pooled else nn.Identity()
        last = index == 3
        self.pool_first = pooled and (spec.before_neuron or last)
        out_hw = ((hw[0] + 1) // 2, (hw[1] + 1) // 2) if pooled else hw
        self.out_hw = out_hw
        neuron_hw = out_hw if self.pool_first else hw
        self.lif = (
            None
            if last
            else LIFLayer(
                f"sps.{index}",
                (c_out, *neuron_hw),
                v_th=cfg.v_th,
                tau_mem_inv=cfg.tau_mem_inv,
                surrogate_alpha=cfg.surrogate_alpha,
                dt=cfg.neuron_dt_s,
            )
        )

    @property
    def lif_then_max_pool(self) -> bool:
        """Whether the stage fires and then max-pools the spikes: in training on CUDA both
        run in one pass (:mod:`dvsapp.core.model.fused_lif_pool`)."""
        return self.lif is not None and not self.pool_first and isinstance(self.pool, MaxPool3x3s2)

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))
        if self.pool_first:
            y = self.pool(y)
        if self.lif is not None:
            y5 = y.reshape(t, b, *y.shape[1:])
            if self.lif_then_max_pool:  # in training on CUDA possibly one pass (fused_lif_pool)
                return self.lif.forward_max_pooled(y5, run, self.pool)
            y = self.lif(y5, run).flatten(0, 1)
        if not self.pool_first:
            y = self.pool(y)
        return y.reshape(t, b, *y.shape[1:])


class PatchSplitting(nn.Module):
    """Spiking patch splitting: ``frames [T, B, P, H, W] -> tokens [T, B, D, N]`` (membrane)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hw = tuple(cfg.input_hw)
        c_in = cfg.in_channels * cfg.temporal_kernel
        stages = []
        for i, c in enumerate(cfg.stage_channels):
            stage = _Stage(cfg, i, c_in, c, hw)
            stages.append(stage)
            c_in, hw = c, stage.out_hw
        self.stages = nn.ModuleList(stages)
        d = cfg.embed_dim
        self.rpe_lif = LIFLayer(
            "sps.rpe",
            (d, *hw),
            v_th=cfg.v_th,
            tau_mem_inv=cfg.tau_mem_inv,
            surrogate_alpha=cfg.surrogate_alpha,
            dt=cfg.neuron_dt_s,
        )
        self.rpe_conv = Conv3x3(d, d)
        self.rpe_bn = nn.BatchNorm2d(d)

    def forward(self, frames: torch.Tensor, run: Run) -> torch.Tensor:
        x = frames
        for stage in self.stages:
            x = stage(x, run)
        t, b, d, h, w = x.shape
        rpe = self.rpe_bn(self.rpe_conv(self.rpe_lif(x, run).flatten(0, 1))).reshape(t, b, d, h, w)
        tokens = (x + rpe).reshape(t, b, d, h * w)
        # channels-last maps (training on CUDA) give tokens with D innermost; the blocks' neurons
        # and 1x1 convolutions take them contiguous, and would each copy them: lay them out once
        # here, where the compiled graph writes the sum in that layout directly
        return tokens.contiguous() if tokens.is_cuda else tokens


# -------------------------------------------------------------- encoder
class SpikingMLP(nn.Module):
    """``BN(W2 SN(BN(W1 SN(X))))`` over tokens, hidden width ``mlp_ratio * D``."""

    def __init__(self, cfg: ModelConfig, block_index: int) -> None:
        super().__init__()
        d, n = cfg.embed_dim, cfg.n_tokens
        hidden = int(round(cfg.mlp_ratio * d))
        neuron = {"v_th": cfg.v_th, "tau_mem_inv": cfg.tau_mem_inv, "surrogate_alpha": cfg.surrogate_alpha}
        self.lif1 = LIFLayer(f"blocks.{block_index}.mlp.in", (d, n), dt=cfg.neuron_dt_s, **neuron)
        self.fc1 = nn.Sequential(nn.Conv1d(d, hidden, kernel_size=1), nn.BatchNorm1d(hidden))
        self.lif2 = LIFLayer(f"blocks.{block_index}.mlp.hidden", (hidden, n), dt=cfg.neuron_dt_s, **neuron)
        self.fc2 = nn.Sequential(nn.Conv1d(hidden, d, kernel_size=1), nn.BatchNorm1d(d))

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        t, b, d, n = x.shape
        h = self.fc1(self.lif1(x, run).flatten(0, 1))
        h = self.lif2(h.reshape(t, b, -1, n), run).flatten(0, 1)
        return self.fc2(h).reshape(t, b, d, n)


class EncoderBlock(nn.Module):
    """``X <- X + Attn(X); X <- X + MLP(X)`` with membrane-shortcut residuals."""

    def __init__(self, cfg: ModelConfig, block_index: int) -> None:
        super().__init__()
        self.attn = ATTENTIONS[cfg.attention](cfg, block_index)
        self.mlp = SpikingMLP(cfg, block_index)

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        x = x + self.attn(x, run)
        return x + self.mlp(x, run)


# ---------------------------------------------------------------- model
class SpikingTransformer(nn.Module):
    """Spike-driven vision transformer over event frames, with explicit streaming state.

    ``forward(frames [T, B, P, H, W], state=None, *, taps=None) -> (logits [T, B, C], state)``.

    Running a sequence in one call or split into windows with the state carried
    gives the same logits.  ``state=None`` starts from rest (the forward builds the
    explicit initial state itself, so ``torch.compile`` sees one graph).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.sps = PatchSplitting(config)
        self.blocks = nn.ModuleList(EncoderBlock(config, i) for i in range(config.depth))
        self.head_lif = LIFLayer(
            "head",
            (d,),
            v_th=config.v_th,
            tau_mem_inv=config.tau_mem_inv,
            surrogate_alpha=config.surrogate_alpha,
            dt=config.neuron_dt_s,
        )
        self.head = nn.Linear(d, config.num_classes)
        self.integrator = head_integrator(config.head_decay, config.neuron_dt_s)
        layers = [m for m in self.modules() if isinstance(m, LIFLayer)]
        for slot, layer in enumerate(layers):
            layer.slot = slot
        self._neuron_shapes = tuple(layer.feature_shape for layer in layers)
        self._neuron_names = tuple(layer.name for layer in layers)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    @property
    def neuron_layers(self) -> tuple[str, ...]:
        """Names of the spiking layers, in state order."""
        return self._neuron_names

    def initial_state(self, batch: int = 1, device=None, dtype=None) -> ModelState:
        """The state at rest for ``batch`` samples (zeros)."""
        if device is None or dtype is None:
            p = next(self.parameters())
            device = p.device if device is None else device
            dtype = p.dtype if dtype is None else dtype
        c = self.config.num_classes
        # a model moved to channels-last (on CUDA) keeps its [C, H, W] membranes in that layout:
        # the layout its convolutions hand the neurons
        w = self.sps.stages[0].conv.weight
        cl = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()

        def zeros(shape):
            fmt = torch.channels_last if cl and len(shape) == 3 else torch.contiguous_format
            return torch.empty(batch, *shape, device=device, dtype=dtype, memory_format=fmt).zero_()

        return ModelState(
            neurons=tuple(LIFBoxFeedForwardState(v=zeros(shape)) for shape in self._neuron_shapes),
            head=LIState(
                v=torch.zeros(batch, c, device=device, dtype=dtype),
                i=torch.zeros(batch, c, device=device, dtype=dtype),
            ),
            inputs=torch.zeros(
                batch,
                self.config.temporal_kernel - 1,
                self.config.in_channels,
                *self.config.input_hw,
                device=device,
                dtype=dtype,
            ),
        )

    def _check(self, frames: torch.Tensor, state: ModelState | None) -> None:
        cfg = self.config
        expected = (cfg.in_channels, *cfg.input_hw)
        if frames.dim() != 5 or tuple(frames.shape[2:]) != expected:
            raise ConfigError(
                f"frames of shape {tuple(frames.shape)} do not fit the model: expected "
                f"[T, B, {expected[0]}, {expected[1]}, {expected[2]}]"
            )
        if state is not None:
            if len(state.neurons) != len(self._neuron_shapes):
                raise ConfigError(
                    f"state holds {len(state.neurons)} neuron layers, the model has {len(self._neuron_shapes)}"
                )
            if state.batch_size != frames.shape[1]:
                raise ConfigError(
                    f"state is for batch {state.batch_size}, frames have batch {frames.shape[1]}"
                )

    def forward(
        self,
        frames: torch.Tensor,
        state: ModelState | None = None,
        *,
        taps: TapRecorder | None = None,
    ) -> tuple[torch.Tensor, ModelState]:
        """Run ``T`` timesteps.

        Parameters
        ----------
        frames : Tensor [T, B, P, H, W]
            Event counts (or voxel values) per timestep of ``config.step_us``.
        state : ModelState, optional
            State after the previous window; ``None`` starts from rest.
        taps : TapRecorder, optional
            Filled with attention spikes and firing rates when given.

        Returns
        -------
        logits : Tensor [T, B, C]
            Logits smoothed by the leaky integrator (the membrane of the LI cell).
        state : ModelState
            State after the last timestep.
        """
        self._check(frames, state)
        t, b = frames.shape[:2]
        if state is None:
            state = self.initial_state(b, frames.device, frames.dtype)
        run = Run(states=list(state.neurons), taps=taps)
        if taps is not None:
            taps.token_hw = self.config.token_hw
        stem_in, history = self._stack_history(frames, state.inputs)
        x = self.sps(stem_in, run)
        for block in self.blocks:
            x = block(x, run)
        spikes = self.head_lif(x.mean(dim=-1), run)  # [T, B, D]
        raw = self.head(spikes.flatten(0, 1)).reshape(t, b, -1)
        li = state.head
        smoothed = []
        for i in range(t):
            out, li = self.integrator(raw[i], li)
            smoothed.append(out)
        return torch.stack(smoothed), ModelState(neurons=tuple(run.states), head=li, inputs=history)

    def _stack_history(
        self, frames: torch.Tensor, history: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames [T, B, P, H, W]`` -> ``[T, B, k*P, H, W]`` (frames ``t-k+1 .. t`` per step) and the new history."""
        k = self.config.temporal_kernel
        if k == 1:
            return frames, history
        t = frames.shape[0]
        seq = torch.cat([history.transpose(0, 1).to(frames.dtype), frames], dim=0)  # [k-1+T, B, P, H, W]
        stacked = torch.cat([seq[j : j + t] for j in range(k)], dim=2)
        return stacked, seq[t:].transpose(0, 1).contiguous()


def build_model(config: ModelConfig) -> SpikingTransformer:
    """A freshly initialised :class:`SpikingTransformer` for ``config``."""
    return SpikingTransformer(config)
