"""Spiking self-attention variants, chosen by ``ModelConfig.attention`` from :data:`ATTENTIONS`.

All variants share the spike-driven front and back (Spike-driven Transformer)::

    S   = SN(X)                                  X [T, B, D, N] membrane of the residual stream
    Q   = SN(BN(W_q S)),  K = SN(BN(W_k S)),  V = SN(BN(W_v S))     binary [T, B, D, N]
    A   = mix(Q, K, V)                           binary [T, B, D, N]  (the variant)
    out = BN(W_p A)                              added to the residual membrane

``SN`` is the spike-driven LIF (threshold 1; the attention neuron ``SN_0.5`` uses 0.5).
Every ``W`` is a 1x1 convolution over tokens and sees only binary spikes.  The
variants differ in ``mix``; ``h`` heads split ``D`` into groups of ``d = D / h``:

``ssa``   Spikformer's spiking self-attention, per head: ``A = SN_0.5(V (Q^T K)^T s)``
          i.e. ``A_n = SN_0.5(s * sum_m (q_n . k_m) v_m)``.  Stores the ``N x N`` matrix:
          O(N^2 D) time and O(N^2 h) memory (the baseline).
``sdsa``  Spike-driven self-attention: ``A = Q ⊗ SN_0.5(sum_n K_n ⊗ V_n)``: a column
          sum of a mask, then a mask: O(N D), no multiplications.
``lrf``   LRF-Dyn (local receptive field dynamics): see :class:`LRFAttention`.
``lsssa`` LSFormer-style local structure-aware attention within dilated local
          windows: see :class:`LocalWindowAttention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dvsapp.core.model.layers import LIFLayer, Run
from dvsapp.core.model.taps import AttentionOps

__all__ = [
    "ATTENTIONS",
    "LRFAttention",
    "LocalWindowAttention",
    "SpikeDrivenAttention",
    "SpikingAttention",
    "SpikingSelfAttention",
    "ssa_mix",
]


def _conv_bn(dim: int, *, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(dim, dim, kernel_size=1, bias=bias), nn.BatchNorm1d(dim))


def _mean(x: torch.Tensor) -> float:
    return float(x.detach().float().mean())


class SpikingAttention(nn.Module):
    """Shared front (shortcut neuron, Q/K/V) and back (projection) of every variant.

    Subclasses implement :meth:`mix` (binary Q, K, V -> binary attention output) and
    :meth:`count_ops`.  ``forward(x [T, B, D, N], run) -> [T, B, D, N]`` (a membrane
    increment for the residual stream).
    """

    #: shape of one sample's attention-neuron state relative to (D, N): set by subclasses
    def __init__(self, cfg, block_index: int) -> None:
        super().__init__()
        d, n = cfg.embed_dim, cfg.n_tokens
        self.dim, self.n_tokens, self.heads = d, n, cfg.heads
        self.token_hw = cfg.token_hw
        self.block_index = block_index
        self.prefix = f"blocks.{block_index}.attn"
        self._neuron = {
            "tau_mem_inv": cfg.tau_mem_inv,
            "surrogate_alpha": cfg.surrogate_alpha,
            "dt": cfg.neuron_dt_s,
        }
        self.shortcut_lif = self.lif("in", (d, n), cfg.v_th)
        self.q = _conv_bn(d)
        self.k = _conv_bn(d)
        self.v = _conv_bn(d)
        self.q_lif = self.lif("q", (d, n), cfg.v_th)
        self.k_lif = self.lif("k", (d, n), cfg.v_th)
        self.v_lif = self.lif("v", (d, n), cfg.v_th)
        self.proj = _conv_bn(d, bias=True)

    def lif(self, name: str, shape: tuple[int, ...], v_th: float) -> LIFLayer:
        return LIFLayer(f"{self.prefix}.{name}", shape, v_th=v_th, **self._neuron)

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, run: Run) -> torch.Tensor:
        """Binary ``q, k, v [T, B, D, N]`` -> binary attention output ``[T, B, D, N]``."""
        raise NotImplementedError

    def count_ops(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> float:
        """Spike-triggered accumulates of :meth:`mix` per sample, summed over timesteps."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, run: Run) -> torch.Tensor:
        t, b, d, n = x.shape
        s = self.shortcut_lif(x, run).flatten(0, 1)  # [T*B, D, N]
        q = self.q_lif(self.q(s).reshape(t, b, d, n), run)
        k = self.k_lif(self.k(s).reshape(t, b, d, n), run)
        v = self.v_lif(self.v(s).reshape(t, b, d, n), run)
        del s  # keep the peak low: the spikes are no longer needed
        out = self.mix(q, k, v, run)
        taps = run.taps
        if taps is not None:
            for name, spikes in (("q", q), ("k", k), ("v", v), ("out", out)):
                taps.record_attention(self.block_index, name, spikes, self.heads)
            ann_macs = t * 2.0 * n * n * d  # softmax(Q K^T) V: Q K^T and A V
            taps.record_ops(self.block_index, AttentionOps(self.count_ops(q, k, v, out), ann_macs))
        return self.proj(out.flatten(0, 1)).reshape(t, b, d, n)


def ssa_mix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """``s * V (Q^T K)^T`` per head, materialising the ``N x N`` score matrix.

    Parameters
    ----------
    q, k, v : Tensor [T, B, D, N]
    heads : int
    scale : float

    Returns
    -------
    Tensor [T, B, D, N]
        ``out[..., c, n] = s * sum_m (q_n . k_m) v[c, m]`` with the dot product over
        the head of channel ``c``.
    """
    t, b, d, n = q.shape
    qh = q.reshape(t * b, heads, d // heads, n)
    kh = k.reshape(t * b, heads, d // heads, n)
    vh = v.reshape(t * b, heads, d // heads, n)
    scores = qh.transpose(-1, -2) @ kh  # [TB, h, N(query), N(key)]
    out = vh @ scores.transpose(-1, -2)  # [TB, h, d, N(query)]
    return out.reshape(t, b, d, n) * scale


class SpikingSelfAttention(SpikingAttention):
    """``ssa`` (Spikformer): ``A = SN_0.5(s * Q K^T V)``; quadratic in tokens."""

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        self.scale = cfg.ssa_scale
        self.attn_lif = self.lif("attn", (self.dim, self.n_tokens), cfg.attn_v_th)

    def mix(self, q, k, v, run):
        return self.attn_lif(ssa_mix(q, k, v, self.heads, self.scale), run)

    def count_ops(self, q, k, v, out):
        t, _, d, n = q.shape
        return t * n * n * d * (_mean(q) + _mean(v))


class SpikeDrivenAttention(SpikingAttention):
    """``sdsa`` (Spike-driven Transformer): ``A = Q ⊗ SN_0.5(sum_tokens K ⊗ V)``.

    The attention neuron holds one membrane per channel (``[B, D, 1]``).
    """

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        self.attn_lif = self.lif("attn", (self.dim, 1), cfg.attn_v_th)

    def mix(self, q, k, v, run):
        kv = (k * v).sum(dim=-1, keepdim=True)  # [T, B, D, 1]
        return q * self.attn_lif(kv, run)

    def count_ops(self, q, k, v, out):
        t, _, d, n = q.shape
        return t * n * d * _mean(k * v)


def lrf_kernel(size: int, decay: float) -> torch.Tensor:
    """Local receptive field ``[size, size]``: ``decay ** chebyshev_distance`` (centre 1)."""
    r = torch.arange(size) - size // 2
    dist = torch.maximum(r.abs()[:, None], r.abs()[None, :])
    return decay ** dist.to(torch.float32)


class LRFAttention(SpikingAttention):
    """``lrf`` (LRF-Dyn): locality-weighted spike-driven attention by membrane dynamics.

    Each token's attention neuron (channel ``c``, token ``n`` on the token grid) is
    charged by the ``K ⊗ V`` spikes of every token, neighbours weighing more::

        I[c, n]   = sum_m KV[c, m]  +  sum_{m in R(n)} w_c(n - m) KV[c, m]     (charge)
        u[t]      = 0.5 u[t-1] + 0.5 I[t]                                       (leak)
        S[t]      = H(u[t] - 0.5);  u[t] <- (1 - S) u[t]                        (fire, reset)
        A[c, n]   = Q[c, n] ⊗ S[c, n]

    ``R(n)`` is the ``k x k`` neighbourhood of ``n`` on the grid; ``w_c`` is a learnt
    depthwise kernel initialised to ``decay ** chebyshev_distance``.  The first
    (global) term is SDSA's column sum; the second is the local receptive field, a
    depthwise convolution.  The effective attention weight of token ``m`` for
    query ``n`` is ``1 + w(n - m)`` — but it is never materialised: charge,
    state and output are ``[B, D, N]``, so memory is linear in ``N``.
    """

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        k = cfg.lrf_kernel
        self.kernel_size = k
        self.kernel = nn.Parameter(lrf_kernel(k, cfg.lrf_decay).repeat(self.dim, 1, 1, 1))  # [D, 1, k, k]
        self.attn_lif = self.lif("attn", (self.dim, self.n_tokens), cfg.attn_v_th)

    def charge(self, kv: torch.Tensor) -> torch.Tensor:
        """``kv [T, B, D, N]`` -> input current of the attention neurons ``[T, B, D, N]``."""
        t, b, d, n = kv.shape
        rows, cols = self.token_hw
        grid = kv.reshape(t * b, d, rows, cols)
        local = F.conv2d(grid, self.kernel.to(kv.dtype), padding=self.kernel_size // 2, groups=d)
        return kv.sum(dim=-1, keepdim=True) + local.reshape(t, b, d, n)

    def mix(self, q, k, v, run):
        return q * self.attn_lif(self.charge(k * v), run)

    def count_ops(self, q, k, v, out):
        t, _, d, n = q.shape
        return t * n * d * _mean(k * v) * (1 + self.kernel_size**2)


class LocalWindowAttention(SpikingAttention):
    """``lsssa`` (LSFormer-style): spiking self-attention inside dilated local windows.

    For each query token ``n`` and head, the keys/values are the ``w x w`` tokens
    around ``n`` on the token grid, spaced ``dilation`` apart (zero outside the grid)::

        A_n = SN_0.5(s * sum_{m in W_dil(n)} (q_n . k_m) v_m)

    Heads are split evenly among ``lsssa_dilations`` (e.g. ``(1, 2)``: half the heads
    see the immediate neighbourhood — local detail —, half a wider, sparser one —
    long range).  Cost O(N w^2 D) and memory O(N w^2 D / h) instead of O(N^2).
    """

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        self.window = cfg.lsssa_window
        self.dilations = tuple(cfg.lsssa_dilations)
        self.scale = cfg.lsssa_scale
        self.attn_lif = self.lif("attn", (self.dim, self.n_tokens), cfg.attn_v_th)

    def local_mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``s * sum_{m in window(n)} (q_n . k_m) v_m`` for ``q, k, v [T, B, D, N]``."""
        t, b, d, n = q.shape
        rows, cols = self.token_hw
        w = self.window
        groups = len(self.dilations)
        dg = d // groups
        hg = self.heads // groups
        dh = d // self.heads
        outs = []
        for g, dil in enumerate(self.dilations):
            ch = slice(g * dg, (g + 1) * dg)
            qg = q[:, :, ch].reshape(t * b, hg, dh, n)
            unfold = {"kernel_size": w, "dilation": dil, "padding": dil * (w // 2)}
            kg = F.unfold(k[:, :, ch].reshape(t * b, dg, rows, cols), **unfold).reshape(
                t * b, hg, dh, w * w, n
            )
            vg = F.unfold(v[:, :, ch].reshape(t * b, dg, rows, cols), **unfold).reshape(
                t * b, hg, dh, w * w, n
            )
            scores = torch.einsum("bhdn,bhdwn->bhwn", qg, kg)  # [TB, hg, w*w, N]
            outs.append(torch.einsum("bhwn,bhdwn->bhdn", scores, vg).reshape(t, b, dg, n))
        return torch.cat(outs, dim=2) * self.scale

    def mix(self, q, k, v, run):
        return self.attn_lif(self.local_mix(q, k, v), run)

    def count_ops(self, q, k, v, out):
        t, _, d, n = q.shape
        return t * n * self.window**2 * d * (_mean(q) + _mean(v))


ATTENTIONS: dict[str, type[SpikingAttention]] = {
    "ssa": SpikingSelfAttention,
    "sdsa": SpikeDrivenAttention,
    "lrf": LRFAttention,
    "lsssa": LocalWindowAttention,
}
"""Attention registry: ``ModelConfig.attention`` -> class taking ``(cfg, block_index)``."""
