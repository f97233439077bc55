"""Attention variants against their papers' definitions: Spikformer's SSA block and LRF-Dyn's two forms."""

from __future__ import annotations

import itertools
import weakref

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dvsapp.core.model import build_model, preset
from dvsapp.core.model.attention import (
    LRFAttention,
    SpikingSelfAttention,
    locality_matrix,
    locality_scan,
    lrf_dyn_current,
    lrf_ssa_current,
    ssa_linear_mix,
    ssa_mix,
)
from dvsapp.core.model.layers import LIFLayer, Run


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spikes(shape, rate: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < rate).to(dtype)


def activate(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give the batch norms statistics under which the fresh layers actually fire."""
    g = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.weight.data = 1 + 2 * torch.rand(n, generator=g)
            mod.bias.data = 0.6 * torch.rand(n, generator=g) - 0.1
            mod.running_var.data = 0.05 + 0.3 * torch.rand(n, generator=g)
    return module


def attention(variant: str, **overrides):
    base = {
        "input_hw": (16, 16),
        "patch_size": 4,
        "embed_dim": 16,
        "heads": 4,
        "depth": 1,
        "attention": variant,
    }
    base.update(overrides)
    cfg = preset("tiny", **base)
    attn = build_model(cfg).blocks[0].attn
    layers = [m for m in attn.modules() if isinstance(m, LIFLayer)]
    for slot, layer in enumerate(layers):
        layer.slot = slot
    return attn, layers, cfg


# ------------------------------------------------------------------ LRF-Dyn
def test_locality_matrix_is_the_decay_with_grid_distance():
    r = locality_matrix((3, 4), 0.5)
    assert r.shape == (12, 12) and torch.equal(r, r.T)
    # token (1, 1) = index 5
    assert r[5, 5] == 1.0
    assert r[5, 4] == r[5, 6] == r[5, 1] == r[5, 9] == 0.5  # the four grid neighbours
    assert r[5, 0] == 0.25  # diagonal neighbour (1 + 1 steps)
    assert r[5, 11] == 0.5**3  # (2, 3): 1 + 2 steps
    assert r[0, 11] == 0.5**5


@pytest.mark.parametrize("token_hw", [(1, 1), (1, 6), (5, 1), (3, 5), (8, 8)])
@pytest.mark.parametrize("decay", [0.5, 0.8])
def test_locality_scan_equals_the_matrix_product(token_hw, decay):
    n = token_hw[0] * token_hw[1]
    x = torch.randn(2, 3, 7, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    expected = x @ locality_matrix(token_hw, decay).T
    torch.testing.assert_close(locality_scan(x, token_hw, decay), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("token_hw", "heads", "lam", "decay", "rate"),
    [
        ((4, 4), 4, 0.5, 0.5, 0.3),
        ((3, 5), 2, 0.2, 0.7, 0.5),
        ((16, 16), 8, 0.5, 0.5, 0.1),
        ((1, 9), 1, 0.9, 0.3, 0.6),
    ],
)
def test_lrf_dynamics_form_equals_the_lrf_ssa_form_on_random_spikes(token_hw, heads, lam, decay, rate):
    """The two forms give the same attention current: 1e-10 absolute in float64, 1e-5 relative in float32.

    Both are the same real-valued sum reassociated (no fire-and-reset inside the
    token scan), so in float64 they differ only by rounding (about 1e-14 measured).
    """
    n = token_hw[0] * token_hw[1]
    shape = (3, 2, 32, n)
    q, k, v = (spikes(shape, rate, seed) for seed in (1, 2, 3))
    args = (heads, 0.25, lam, decay, token_hw)
    reference = lrf_ssa_current(q, k, v, *args)
    dynamics = lrf_dyn_current(q, k, v, *args)
    assert reference.abs().max() > 1  # a non-trivial current
    torch.testing.assert_close(dynamics, reference, rtol=0, atol=1e-10)
    q32, k32, v32 = (x.float() for x in (q, k, v))
    torch.testing.assert_close(
        lrf_dyn_current(q32, k32, v32, *args),
        reference.float(),
        rtol=1e-5,
        atol=1e-5 * float(reference.abs().max()),
    )


def test_lrf_forms_agree_in_their_gradients():
    """Training backpropagates through the dynamics form: its gradients are the LRF-SSA form's."""
    token_hw, shape = (3, 4), (2, 1, 8, 12)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    weight = torch.randn(shape, generator=g, dtype=torch.float64)
    grads = []
    for fn in (lrf_ssa_current, lrf_dyn_current):
        (fn(*inputs, 2, 0.25, 0.4, 0.6, token_hw) * weight).sum().backward()
        grads.append([x.grad.clone() for x in inputs])
        for x in inputs:
            x.grad = None
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_lrf_attention_weighs_neighbours_more():
    """With no query spikes only the locality term is left: lambda * decay ** distance from the active value."""
    attn, _, cfg = attention("lrf", lrf_lambda=0.5, lrf_decay=0.5)
    assert isinstance(attn, LRFAttention)
    rows, cols = cfg.token_hw
    q = torch.zeros(1, 1, cfg.embed_dim, rows * cols)
    k = torch.ones_like(q)
    v = torch.zeros_like(q)
    v[..., 1 * cols + 1] = 1  # one active value token at (1, 1)
    current = attn.current(q, k, v)[0, 0, 0].reshape(rows, cols)
    assert current[1, 1] == pytest.approx(0.5)
    assert current[0, 1] == current[1, 0] == current[1, 2] == current[2, 1] == pytest.approx(0.25)
    assert current[0, 0] == pytest.approx(0.125)
    assert current[3, 3] == pytest.approx(0.5 * 0.5**4)
    # with the queries on, the SSA term adds the same to every token that has a query
    q[...] = 1
    with_ssa = attn.current(q, k, v)[0, 0, 0].reshape(rows, cols)
    added = with_ssa - current
    torch.testing.assert_close(
        added, torch.full_like(added, 0.5 * cfg.ssa_scale * (cfg.embed_dim // cfg.heads))
    )


def test_lrf_module_uses_the_dynamics_form_and_matches_the_reference():
    attn, _, cfg = attention("lrf", input_hw=(24, 20), lrf_lambda=0.3, lrf_decay=0.6)
    q, k, v = (spikes((2, 3, cfg.embed_dim, cfg.n_tokens), 0.4, s) for s in (4, 5, 6))
    torch.testing.assert_close(attn.current(q, k, v), attn.reference_current(q, k, v), rtol=0, atol=1e-10)


class PeakLiveBytes(TorchDispatchMode):
    """Peak bytes of the storages that ops create while active (freed ones subtracted)."""

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._live:
                    self._live.add(key)
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(t, self._free, key, storage.nbytes())
        return out


def test_lrf_layer_at_4096_tokens_needs_under_a_tenth_of_ssas_memory():
    """One attention layer (D=128, 4 heads, 64x64 tokens, batch 1, one step) in float32.

    ``ssa`` must hold its ``[heads, N, N]`` score matrix, ``heads * N^2 * 4`` bytes =
    256 MiB (benchmarks/bench_attention_memory.py measures 274 MiB for the layer);
    the ``lrf`` layer's whole peak must stay under a tenth of that lower bound.
    """
    attn, layers, cfg = attention("lrf", input_hw=(64, 64), patch_size=1, embed_dim=128, heads=4)
    attn.eval()
    n = cfg.n_tokens
    x = torch.rand(1, 1, 128, n, generator=torch.Generator().manual_seed(0)) * 4
    run = Run(states=[layer.initial_state(1) for layer in layers])
    with torch.inference_mode(), PeakLiveBytes() as probe:
        out = attn(x, run)
        del out
    ssa_scores = cfg.heads * n * n * 4
    assert 0 < probe.peak <= ssa_scores / 10


# --------------------------------------------------------------- Spikformer
def test_ssa_reassociated_equals_the_quadratic_form():
    q, k, v = (spikes((2, 2, 16, 20), 0.5, s) for s in (7, 8, 9))
    torch.testing.assert_close(
        ssa_linear_mix(q, k, v, 4, 0.25), ssa_mix(q, k, v, 4, 0.25), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("variant", ["ssa", "lrf"])
def test_ssa_and_lrf_are_spikformers_block(variant):
    """Q/K/V conv (no bias)-BN-LIF, SN_0.5 on the scaled product, projection conv (bias)-BN-LIF: spikes out."""
    attn, layers, cfg = attention(variant, ssa_scale=0.25)
    assert isinstance(attn, SpikingSelfAttention) and attn.scale == 0.25
    names = [layer.name.rsplit(".", 1)[1] for layer in layers]
    assert sorted(names) == ["attn", "in", "k", "proj", "q", "v"]
    v_th = {layer.name.rsplit(".", 1)[1]: float(layer.cell.p.v_th) for layer in layers}
    assert v_th == {"in": 1.0, "q": 1.0, "k": 1.0, "v": 1.0, "attn": 0.5, "proj": 1.0}
    for part in (attn.q, attn.k, attn.v):
        assert part[0].bias is None and isinstance(part[1], nn.BatchNorm1d)
    assert attn.proj[0].bias is not None
    x = torch.rand(4, 2, cfg.embed_dim, cfg.n_tokens, generator=torch.Generator().manual_seed(1)) * 4
    run = Run(states=[layer.initial_state(2) for layer in layers])
    with torch.no_grad():
        out = activate(attn).eval()(x, run)
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.sum() > 0  # the branch adds spikes


def test_sdsa_keeps_the_spike_driven_transformers_membrane_output():
    attn, layers, cfg = attention("sdsa")
    assert attn.proj_lif is None
    x = torch.rand(4, 2, cfg.embed_dim, cfg.n_tokens, generator=torch.Generator().manual_seed(1)) * 4
    run = Run(states=[layer.initial_state(2) for layer in layers])
    with torch.no_grad():
        out = activate(attn).eval()(x, run)
    assert not set(out.unique().tolist()) <= {0.0, 1.0}


def test_lrf_count_ops_counts_spike_driven_accumulates():
    attn, _, cfg = attention("lrf", heads=2)
    t, b, d, n = 2, 3, cfg.embed_dim, cfg.n_tokens
    q, k, v = (spikes((t, b, d, n), 0.3, s, torch.float32) for s in (1, 2, 3))
    dh = d // 2
    pairs = 0  # (key channel, value channel) pairs of one head that both fired at a token
    for ti, bi, m, h in itertools.product(range(t), range(b), range(n), range(2)):
        ch = slice(h * dh, (h + 1) * dh)
        pairs += int(k[ti, bi, ch, m].sum()) * int(v[ti, bi, ch, m].sum())
    expected = (pairs + float(q.sum()) * dh) / b + 4 * t * n * d
    assert attn.count_ops(q, k, v, None) == pytest.approx(expected)


# ----------------------------------------------------------------- compile
def test_compiled_lrf_model_is_one_graph_per_signature_and_matches_eager():
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    cfg = preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=16, heads=4, depth=1, attention="lrf")
    model = activate(build_model(cfg)).eval()
    g = torch.Generator().manual_seed(3)
    frames = (torch.rand(4, 1, 2, 16, 16, generator=g) < 0.3).float() * 3
    compiled = torch.compile(model, backend=counting_backend, fullgraph=True)
    try:
        with torch.inference_mode():
            expected, _ = model(frames)
            a, state = compiled(frames[:2])
            b, state = compiled(frames[2:], state)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 2  # from rest, and with the state given
    assert expected.abs().sum() > 0
    torch.testing.assert_close(torch.cat([a, b]), expected, rtol=1e-6, atol=1e-6)
