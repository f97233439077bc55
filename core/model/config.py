"""``ModelConfig``: every number that shapes a spiking transformer, and the presets.

A config is a frozen dataclass that round-trips through a JSON dict
(:meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`), which is how it
travels inside checkpoint metadata.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dvsapp.core.errors import ConfigError
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.model.attention import ATTENTIONS
from dvsapp.core.model.pooling import POOLINGS

__all__ = ["ModelConfig", "PRESETS", "preset"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and neuron settings of a :class:`~dvsapp.core.model.SpikingTransformer`.

    Attributes
    ----------
    input_hw : (int, int)
        Input frame size ``(height, width)`` in pixels (the pipeline crops/downsamples
        the sensor to it).
    in_channels : int
        Input channels = event polarities (2).
    embed_dim : int
        Token width ``D``; the patch-splitting stages use ``D/8, D/4, D/2, D`` channels.
    depth : int
        Number of encoder blocks.
    heads : int
        Attention heads (``D`` must be divisible by it).
    mlp_ratio : float
        Hidden width of the MLP as a multiple of ``D``.
    patch_size : int
        Downsampling factor of the patch splitting, a power of two from 1 to 16; the
        token grid is ``input_hw / patch_size``.
    attention : str
        Key of :data:`dvsapp.core.model.attention.ATTENTIONS`: ``ssa``, ``sdsa``, ``lrf``, ``lsssa``.
    pooling : str
        Key of :data:`dvsapp.core.model.pooling.POOLINGS`: ``max`` or ``spool`` (Spiking Response Pooling).
    pooling_stages : str
        Which of the four patch-splitting stages downsample by 2, as four ``0``/``1``
        characters (the Spike-driven Transformer's ``pooling_stat``, e.g. ``"0111"``);
        it must hold ``log2(patch_size)`` ones. Empty: the first ``log2(patch_size)`` stages.
    temporal_kernel : int
        Timesteps the first convolution sees at once: frames ``t-k+1 .. t`` stacked as
        channels (causal; the last ``k-1`` frames are carried in the state), so the
        stem can measure local motion direction, which one frame's counts cannot show.
    v_th, attn_v_th : float
        Firing thresholds of ordinary and attention neurons.
    tau_mem_inv : float
        Inverse membrane time constant in 1/s (with ``neuron_dt_s = 1 ms``, 500 gives a 0.5 decay).
    neuron_dt_s : float
        Norse integration step in seconds (a model step is ``step_us`` of events,
        the neuron sees it as one ``neuron_dt_s`` Euler step).
    surrogate_alpha : float
        Steepness of Norse's ``tanh`` surrogate gradient (2 = ``Sigmoid(4x)``'s derivative).
    head_decay : float
        Weight ``a`` of the newest logits in the Norse leaky integrator of the head,
        ``v <- (1 - a) v + a logits`` (1 = no smoothing).
    step_us : int
        Length of one timestep of events in microseconds.
    timesteps : int
        Timesteps per window the model is trained and streamed with.
    class_names : tuple of str
        Output classes, in logit order.
    ssa_scale : float
        Scale ``s`` of ``SN(Q K^T V s)`` in ``ssa`` (0.25, Spikformer's DVS models).
    lrf_decay : float
        Decay ``delta`` per token of grid distance in ``lrf``'s locality weights ``r``.
    lrf_lambda : float
        Weight ``lambda`` of the locality term in ``lrf``: ``(1 - lambda) * SSA + lambda * r``.
    lsssa_window : int
        Odd side of the local window of ``lsssa`` in tokens.
    lsssa_dilations : tuple of int
        Dilation of each head group in ``lsssa`` (heads are split evenly among them).
    lsssa_scale : float
        Scale ``s`` of ``lsssa`` (a window sums far fewer tokens than ``ssa``, so it is larger).
    """

    input_hw: tuple[int, int] = (64, 64)
    in_channels: int = 2
    embed_dim: int = 64
    depth: int = 1
    heads: int = 4
    mlp_ratio: float = 4.0
    patch_size: int = 8
    attention: str = "sdsa"
    pooling: str = "max"
    pooling_stages: str = ""
    temporal_kernel: int = 1
    v_th: float = 1.0
    attn_v_th: float = 0.5
    tau_mem_inv: float = 500.0
    neuron_dt_s: float = 0.001
    surrogate_alpha: float = 2.0
    head_decay: float = 0.5
    step_us: int = 10_000
    timesteps: int = 8
    class_names: tuple[str, ...] = field(default=GESTURE_CLASSES)
    ssa_scale: float = 0.25
    lrf_decay: float = 0.5
    lrf_lambda: float = 0.5
    lsssa_window: int = 3
    lsssa_dilations: tuple[int, ...] = (1, 2)
    lsssa_scale: float = 0.5

    def __post_init__(self) -> None:
        # normalise JSON lists to tuples so configs compare equal after a round trip
        for name in ("input_hw", "class_names", "lsssa_dilations"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_pools(self) -> int:
        """Number of 2x downsamplings in the patch splitting."""
        return int(round(math.log2(self.patch_size)))

    @property
    def pool_pattern(self) -> tuple[bool, bool, bool, bool]:
        """For each patch-splitting stage, whether it downsamples by 2."""
        if self.pooling_stages:
            return tuple(c == "1" for c in self.pooling_stages)
        return tuple(i < self.n_pools for i in range(4))

    @property
    def token_hw(self) -> tuple[int, int]:
        """Token grid ``(rows, cols)``."""
        return (self.input_hw[0] // self.patch_size, self.input_hw[1] // self.patch_size)

    @property
    def n_tokens(self) -> int:
        return self.token_hw[0] * self.token_hw[1]

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four patch-splitting stages, ``D/8, D/4, D/2, D``."""
        d = self.embed_dim
        return (d // 8, d // 4, d // 2, d)

    @property
    def window_us(self) -> int:
        return self.step_us * self.timesteps

    # --------------------------------------------------------------- checking
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent field."""

        def bad(reason: str) -> ConfigError:
            return ConfigError(f"model config: {reason}")

        if len(self.input_hw) != 2 or min(self.input_hw) <= 0:
            raise bad(f"input_hw {self.input_hw} must be two positive sizes")
        ps = self.patch_size
        if ps < 1 or ps > 16 or ps & (ps - 1):
            raise bad(f"patch_size {ps} must be a power of two from 1 to 16")
        if self.input_hw[0] % ps or self.input_hw[1] % ps:
            raise bad(f"input_hw {self.input_hw} is not divisible by patch_size {ps}")
        if self.embed_dim < 8 or self.embed_dim % 8:
            raise bad(f"embed_dim {self.embed_dim} must be a positive multiple of 8")
        if self.heads < 1 or self.embed_dim % self.heads:
            raise bad(f"embed_dim {self.embed_dim} is not divisible by heads {self.heads}")
        if self.depth < 1:
            raise bad(f"depth {self.depth} must be at least 1")
        if self.in_channels < 1:
            raise bad(f"in_channels {self.in_channels} must be at least 1")
        if self.attention not in ATTENTIONS:
            raise bad(f"attention {self.attention!r} is not one of {', '.join(ATTENTIONS)}")
        if self.pooling not in POOLINGS:
            raise bad(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.pooling_stages:
            st = self.pooling_stages
            if len(st) != 4 or set(st) - {"0", "1"} or st.count("1") != self.n_pools:
                raise bad(
                    f"pooling_stages {st!r} must be four 0/1 characters with log2(patch_size) = "
                    f"{self.n_pools} ones"
                )
        if self.temporal_kernel < 1:
            raise bad(f"temporal_kernel {self.temporal_kernel} must be at least 1")
        if not self.class_names:
            raise bad("class_names is empty")
        if self.step_us <= 0 or self.timesteps <= 0:
            raise bad("step_us and timesteps must be positive")
        if not 0.0 < self.head_decay <= 1.0:
            raise bad(f"head_decay {self.head_decay} must be in (0, 1]")
        if self.mlp_ratio <= 0:
            raise bad(f"mlp_ratio {self.mlp_ratio} must be positive")
        for name in ("lsssa_window",):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise bad(f"{name} {k} must be odd and positive")
        if not self.lsssa_dilations or min(self.lsssa_dilations) < 1:
            raise bad(f"lsssa_dilations {self.lsssa_dilations} must be positive")
        if self.heads % len(self.lsssa_dilations):
            raise bad(f"heads {self.heads} cannot be split among {len(self.lsssa_dilations)} dilations")

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in LEGACY_FIELDS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config has unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"model config: {exc}") from None

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"model config has no field(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


#: fields older checkpoints carry that no longer shape the model (dropped when read)
LEGACY_FIELDS = frozenset({"lrf_kernel"})

PRESETS: dict[str, ModelConfig] = {
    # real time on 2 CPU cores; 20 ms steps (the configuration of the bundled model:
    # docs/model.md, "Temporal model and ablation")
    "tiny": ModelConfig(
        input_hw=(64, 64),
        embed_dim=64,
        depth=1,
        heads=4,
        patch_size=8,
        attention="sdsa",
        step_us=20_000,
        timesteps=8,
    ),
    # the 128x128 model: 16x16 tokens
    "small": ModelConfig(
        input_hw=(128, 128),
        embed_dim=128,
        depth=2,
        heads=4,
        patch_size=8,
        pooling_stages="0111",
        attention="sdsa",
        step_us=20_000,
        timesteps=8,
    ),
    # the Spike-driven Transformer's DVS128 Gesture network (BICLab conf/gesture/2_256_200E_t16.yml):
    # 128x128 input, pooling_stat 0111 -> 16x16 = 256 tokens, D=256, 2 blocks, 8 heads, T=16
    "sdt-2-256": ModelConfig(
        input_hw=(128, 128),
        embed_dim=256,
        depth=2,
        heads=8,
        patch_size=8,
        pooling_stages="0111",
        attention="sdsa",
        step_us=50_000,
        timesteps=16,
    ),
}
"""Named configs."""


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The preset ``name`` with ``overrides`` applied (``ConfigError`` for unknown names)."""
    if name not in PRESETS:
        raise ConfigError(f"no model preset {name!r}; known: {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    return cfg.replace(**overrides) if overrides else cfg
