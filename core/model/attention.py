"""Spiking self-attention variants, chosen by ``ModelConfig.attention`` from :data:`ATTENTIONS`.

Every variant sits in a block with a membrane-shortcut residual (Spike-driven
Transformer): the block's input ``X`` is a membrane potential, so the branch
starts with a neuron, and what the branch returns is added to ``X``::

    S   = SN(X)                                  X [T, B, D, N] membrane of the residual stream
    Q   = SN(BN(W_q S)),  K = SN(BN(W_k S)),  V = SN(BN(W_v S))     binary [T, B, D, N]
    A   = mix(Q, K, V)                           binary [T, B, D, N]  (the variant)
    out = BN(W_p A)            (sdsa, lsssa: the SDT's back, a membrane increment)
    out = SN(BN(W_p A))        (ssa, lrf: Spikformer's back, spikes)

``SN`` is the spike-driven LIF (threshold 1; the attention neuron ``SN_0.5`` uses 0.5).
Every ``W`` is a 1x1 convolution over tokens and sees only binary spikes.  The
variants differ in ``mix``; ``h`` heads split ``D`` into groups of ``d = D / h``:

``ssa``   Spikformer's spiking self-attention, per head: ``A = SN_0.5(s V (Q^T K)^T)``,
          i.e. ``A_n = SN_0.5(s * sum_m (q_n . k_m) v_m)`` with Spikformer's DVS scale
          ``s = 0.25``.  Stores the ``N x N`` matrix: O(N^2 D) time, O(N^2 h) memory.
``sdsa``  Spike-driven self-attention: ``A = Q ⊗ SN_0.5(sum_n K_n ⊗ V_n)``: a column
          sum of a mask, then a mask: O(N D), no multiplications.
``lrf``   LRF-Dyn: SSA with a locality-weighted attention matrix, computed without
          storing it: see :class:`LRFAttention`.
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
    "locality_matrix",
    "locality_scan",
    "lrf_dyn_current",
    "lrf_ssa_current",
    "ssa_linear_mix",
    "ssa_mix",
]


def _conv_bn(dim: int, *, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(dim, dim, kernel_size=1, bias=bias), nn.BatchNorm1d(dim))


def _mean(x: torch.Tensor) -> float:
    return float(x.detach().float().mean())


class SpikingAttention(nn.Module):
    """Shared front (shortcut neuron, Q/K/V) and back (projection) of every variant.

    Subclasses implement :meth:`mix` (binary Q, K, V -> binary attention output) and
    :meth:`count_ops`.  ``forward(x [T, B, D, N], run) -> [T, B, D, N]``: what the
    branch adds to the residual membrane (a BN output, or spikes when
    :attr:`proj_spikes` is set).
    """

    #: Spikformer ends the branch with a neuron after the projection (``SN(BN(W_p A))``);
    #: the Spike-driven Transformer adds the projection's BN output itself.
    proj_spikes: bool = False

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
        # Q, K and V stacked in one projection and one neuron population: set by
        # dvsapp.core.model.inference (then q, k, v are None)
        self.qkv: nn.Module | None = None
        self.qkv_lif: nn.Module | None = None
        self.q_lif = self.lif("q", (d, n), cfg.v_th)
        self.k_lif = self.lif("k", (d, n), cfg.v_th)
        self.v_lif = self.lif("v", (d, n), cfg.v_th)
        self.proj = _conv_bn(d, bias=True)
        self.proj_lif = self.lif("proj", (d, n), cfg.v_th) if self.proj_spikes else None

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
        if self.qkv is None:
            q = self.q_lif(self.q(s).reshape(t, b, d, n), run)
            k = self.k_lif(self.k(s).reshape(t, b, d, n), run)
            v = self.v_lif(self.v(s).reshape(t, b, d, n), run)
        else:  # the inference twin: one product for the three
            q, k, v = self.qkv_lif(self.qkv(s).reshape(t, b, 3 * d, n), run).split(d, dim=2)
        del s  # keep the peak low: the spikes are no longer needed
        out = self.mix(q, k, v, run)
        taps = run.taps
        if taps is not None:
            for name, spikes in (("q", q), ("k", k), ("v", v), ("out", out)):
                taps.record_attention(self.block_index, name, spikes, self.heads)
            ann_macs = t * 2.0 * n * n * d  # softmax(Q K^T) V: Q K^T and A V
            taps.record_ops(self.block_index, AttentionOps(self.count_ops(q, k, v, out), ann_macs))
        del q, k, v
        y = self.proj(out.flatten(0, 1)).reshape(t, b, d, n)
        if self.proj_lif is not None:
            y = self.proj_lif(y, run)
        return y


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, D, N] -> [T*B, h, D/h, N]`` (a view)."""
    t, b, d, n = x.shape
    return x.reshape(t * b, heads, d // heads, n)


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
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scores = qh.transpose(-1, -2) @ kh  # [TB, h, N(query), N(key)]
    out = vh @ scores.transpose(-1, -2)  # [TB, h, d, N(query)]
    return out.reshape(q.shape) * scale


def ssa_linear_mix(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float
) -> torch.Tensor:
    """:func:`ssa_mix` reassociated as ``s * (V K^T) Q``: no ``N x N`` tensor, O(N D d).

    Without a softmax the product is associative: ``sum_m (q_n . k_m) v[c, m] =
    sum_e q[e, n] (sum_m k[e, m] v[c, m])``; the inner sum is a ``d x d`` matrix per head.
    """
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    vk = vh @ kh.transpose(-1, -2)  # [TB, h, d(value channel), d(key channel)]
    return (vk @ qh).reshape(q.shape) * scale


def locality_matrix(
    token_hw: tuple[int, int], decay: float, *, dtype=torch.float64, device=None
) -> torch.Tensor:
    """``r [N, N]`` with ``r[i, j] = decay ** (|row_i - row_j| + |col_i - col_j|)`` on the token grid."""
    rows, cols = token_hw
    r = torch.arange(rows, device=device).repeat_interleave(cols)
    c = torch.arange(cols, device=device).repeat(rows)
    dist = (r[:, None] - r[None, :]).abs() + (c[:, None] - c[None, :]).abs()
    return torch.as_tensor(decay, dtype=dtype, device=device) ** dist.to(dtype)


def _leaky_scan_both_ways(x: torch.Tensor, decay: float, dim: int) -> torch.Tensor:
    """``out_i = sum_j decay**|i - j| x_j`` along ``dim``, by two leaky integrators.

    A forward integrator charges with ``x_i`` and leaks by ``decay`` per token,
    ``f_i = x_i + decay f_{i-1}`` (so ``f_i = sum_{j <= i} decay**(i-j) x_j``); a backward
    one does the same from the other end, ``b_i = x_i + decay b_{i+1}``; then
    ``out_i = f_i + decay b_{i+1}``.  Only ``[.., 1 token, ..]`` membranes are live
    per step besides the input and the output.
    """
    xs = x.unbind(dim)
    n = len(xs)
    fwd: list[torch.Tensor | None] = [xs[0]]
    for i in range(1, n):
        fwd.append(xs[i] + decay * fwd[-1])
    out: list[torch.Tensor | None] = [None] * n
    out[n - 1] = fwd[n - 1]
    back = xs[n - 1]
    for i in range(n - 2, -1, -1):
        out[i] = fwd[i] + decay * back
        fwd[i] = None
        back = xs[i] + decay * back
    del fwd, back
    return torch.stack(out, dim)


def locality_scan(x: torch.Tensor, token_hw: tuple[int, int], decay: float) -> torch.Tensor:
    """``r x`` for ``x [..., N]`` on the token grid, without the ``N x N`` matrix.

    ``r`` (:func:`locality_matrix`) is separable, ``decay**|dr| * decay**|dc|``, so it
    is a both-ways leaky scan along every row, then along every column; exact up to
    float rounding.
    """
    rows, cols = token_hw
    grid = x.reshape(*x.shape[:-1], rows, cols)
    along_rows = _leaky_scan_both_ways(grid, decay, -1)
    return _leaky_scan_both_ways(along_rows, decay, -2).reshape(x.shape)


def lrf_ssa_current(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    lam: float,
    decay: float,
    token_hw: tuple[int, int],
) -> torch.Tensor:
    """LRF-SSA, the reference form: ``V alpha^T`` with ``alpha = (1-lam) s Q^T K + lam r``.

    Builds the ``[T*B, h, N, N]`` attention matrix: for checking and small ``N`` only.

    Returns
    -------
    Tensor [T, B, D, N]
        ``out[c, n] = sum_m ((1 - lam) s (q_n . k_m) + lam r[n, m]) v[c, m]``.
    """
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    r = locality_matrix(token_hw, decay, dtype=q.dtype, device=q.device)
    alpha = (1.0 - lam) * scale * (qh.transpose(-1, -2) @ kh) + lam * r  # [TB, h, N, N]
    return (vh @ alpha.transpose(-1, -2)).reshape(q.shape)


def lrf_dyn_current(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    lam: float,
    decay: float,
    token_hw: tuple[int, int],
) -> torch.Tensor:
    """LRF-Dyn, the dynamics form of :func:`lrf_ssa_current`: no ``N x N`` tensor.

    ``(1 - lam) s (V K^T) Q`` (per head, :func:`ssa_linear_mix`) plus ``lam r V`` by
    leaky scans over the token grid (:func:`locality_scan`); memory O(N D).
    """
    # leaky sums in at least float32 (spikes come in bfloat16 under autocast), then v's dtype
    out = locality_scan(v.to(torch.promote_types(v.dtype, torch.float32)), token_hw, decay).to(v.dtype)
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    vk = vh @ kh.transpose(-1, -2)  # [TB, h, d, d]
    tb, h, dh, n = qh.shape
    out = torch.baddbmm(
        out.reshape(tb * h, dh, n),
        vk.reshape(tb * h, dh, dh),
        qh.reshape(tb * h, dh, n),
        beta=lam,
        alpha=(1.0 - lam) * scale,
    )
    return out.reshape(q.shape)


class SpikingSelfAttention(SpikingAttention):
    """``ssa`` (Spikformer): ``A = SN_0.5(s * Q K^T V)``, then ``SN(BN(W_p A))``; quadratic in tokens."""

    proj_spikes = True

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        self.scale = cfg.ssa_scale
        self.attn_lif = self.lif("attn", (self.dim, self.n_tokens), cfg.attn_v_th)

    def current(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Input current of the attention neurons ``[T, B, D, N]``."""
        return ssa_mix(q, k, v, self.heads, self.scale)

    def mix(self, q, k, v, run):
        return self.attn_lif(self.current(q, k, v), run)

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
        # counts up to N, summed in the attention membrane's dtype (float32 under autocast,
        # where the spikes come in bfloat16)
        kv = (k * v).sum(dim=-1, keepdim=True, dtype=run.states[self.attn_lif.slot].v.dtype)
        return q * self.attn_lif(kv, run)

    def count_ops(self, q, k, v, out):
        t, _, d, n = q.shape
        return t * n * d * _mean(k * v)


class LRFAttention(SpikingSelfAttention):
    """``lrf`` (LRF-Dyn): Spikformer's block with a locality-weighted attention matrix.

    The attention weight of key token ``m`` for query token ``n`` mixes SSA's score
    with a local receptive field that decays with the distance on the token grid::

        alpha[n, m] = (1 - lam) * s * (q_n . k_m) + lam * r[n, m],
        r[n, m]     = decay ** (|row_n - row_m| + |col_n - col_m|)
        A           = SN_0.5(V alpha^T)

    computed in the dynamics form (:func:`lrf_dyn_current`): ``s (V K^T) Q`` per head
    (a ``d x d`` matrix, never ``N x N``) plus ``r V`` as leaky charge dynamics over
    the token grid (a membrane per channel that charges with ``v`` and leaks by
    ``decay`` per token, run forwards and backwards along the rows, then the
    columns).  It equals the explicit LRF-SSA form (:func:`lrf_ssa_current`) up to
    float rounding (tested).  The attention neuron ``SN_0.5`` then charges, fires and
    resets over time.
    """

    def __init__(self, cfg, block_index: int) -> None:
        super().__init__(cfg, block_index)
        self.lam = float(cfg.lrf_lambda)
        self.decay = float(cfg.lrf_decay)

    def current(self, q, k, v):
        return lrf_dyn_current(q, k, v, self.heads, self.scale, self.lam, self.decay, self.token_hw)

    def reference_current(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The same current from the explicit ``N x N`` LRF-SSA form (small ``N`` only)."""
        return lrf_ssa_current(q, k, v, self.heads, self.scale, self.lam, self.decay, self.token_hw)

    def count_ops(self, q, k, v, out):
        t, b, d, n = q.shape
        qh, kh, vh = (x.detach().reshape(t, b, self.heads, d // self.heads, n) for x in (q, k, v))
        # V K^T: one accumulate per (value, key) channel pair of a head where both fired
        vk = float((kh.sum(3) * vh.sum(3)).sum()) / b
        # (V K^T) Q: each query spike accumulates one column of the d x d matrix
        vkq = float(qh.sum()) * (d // self.heads) / b
        # r V: four leaky scans, one charge-and-leak update per channel and token each
        return vk + vkq + 4.0 * t * n * d


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
