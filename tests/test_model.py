"""The Norse spiking transformer: neurons, pooling, attention variants, streaming state, taps."""

from __future__ import annotations

import math

import pytest
import torch
from norse.torch.functional.lif_box import LIFBoxFeedForwardState
from norse.torch.module.lif_box import LIFBoxCell
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dvsapp.core.errors import ConfigError
from dvsapp.core.model import ATTENTIONS, PRESETS, ModelConfig, ModelState, TapRecorder, build_model, preset
from dvsapp.core.model.attention import ssa_mix
from dvsapp.core.model.layers import Run
from dvsapp.core.model.network import POOLINGS, SpikingResponsePool, StemConv, _half_precision
from dvsapp.core.model.neurons import LIState, SpikeDrivenLIFCell, head_integrator, lif_parameters

VARIANTS = sorted(ATTENTIONS)


def small_config(**overrides) -> ModelConfig:
    """A model small enough for fast tests: 16x16 input, 4x4 tokens, D=16."""
    base = {"input_hw": (16, 16), "patch_size": 4, "embed_dim": 16, "heads": 4, "depth": 2}
    base.update(overrides)
    return preset("tiny", **base)


def activate(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give the batch norms statistics under which the fresh network actually fires."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.weight.data = 1 + 2 * torch.rand(n, generator=g)
            mod.bias.data = 0.6 * torch.rand(n, generator=g) - 0.1
            mod.running_var.data = 0.05 + 0.3 * torch.rand(n, generator=g)
    return model


def event_frames(shape, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < 0.2
    counts = torch.randint(1, 4, shape, generator=g)
    return (mask * counts).to(dtype)


# ------------------------------------------------------------------ neurons
def run_cell(cell, xs, v0=0.0):
    state = LIFBoxFeedForwardState(v=torch.tensor([v0], dtype=torch.float64))
    spikes, volts = [], []
    for x in xs:
        z, state = cell(torch.tensor([x], dtype=torch.float64), state)
        spikes.append(float(z))
        volts.append(float(state.v))
    return spikes, volts


def test_lif_golden_values_threshold_1():
    # v <- 0.5 v + 0.5 x ; fire at v >= 1 ; hard reset to 0 (values worked out by hand)
    cell = SpikeDrivenLIFCell(lif_parameters(1.0))
    xs = [1.0, 1.0, 1.0, 2.0, 0.0, 3.0, 0.5, 0.5, 0.5, -1.0]
    # v before reset: 0.5, 0.75, 0.875, 1.4375 (fire), 0, 1.5 (fire), 0.25, 0.375, 0.4375, -0.28125
    spikes, volts = run_cell(cell, xs)
    assert spikes == [0, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert volts == [0.5, 0.75, 0.875, 0.0, 0.0, 0.0, 0.25, 0.375, 0.4375, -0.28125]


def test_lif_fires_at_equality_and_attention_threshold():
    one = SpikeDrivenLIFCell(lif_parameters(1.0))
    half = SpikeDrivenLIFCell(lif_parameters(0.5))
    # 0.5 * 0 + 0.5 * 2 = 1 exactly: the Spike-driven Transformer fires (v >= v_th)
    assert run_cell(one, [2.0]) == ([1.0], [0.0])
    # attention neuron (v_th = 0.5): 1 -> v = 0.5 fires; 0.5 -> 0.25, 0.5 -> 0.375, 0.75 -> 0.5625 fires
    assert run_cell(half, [1.0, 0.5, 0.5, 0.75]) == ([1, 0, 0, 1], [0.0, 0.25, 0.375, 0.0])


def test_lif_matches_norse_box_cell_off_threshold():
    params = lif_parameters(1.0)
    ours = SpikeDrivenLIFCell(params)
    norse = LIFBoxCell(params)
    g = torch.Generator().manual_seed(3)
    xs = torch.rand(20, 50, generator=g, dtype=torch.float64) * 3 - 0.5
    s1 = LIFBoxFeedForwardState(v=torch.zeros(50, dtype=torch.float64))
    s2 = LIFBoxFeedForwardState(v=torch.zeros(50, dtype=torch.float64))
    for x in xs:
        z1, s1 = ours(x, s1)
        z2, s2 = norse(x, s2)
        assert torch.equal(z1, z2)
        assert torch.equal(s1.v, s2.v)


def test_lif_surrogate_gradient_is_sigmoid4_derivative_and_reset_detached():
    cell = SpikeDrivenLIFCell(lif_parameters(1.0))
    x = torch.tensor([0.4, 1.6, 2.0, 3.0, -1.0], dtype=torch.float64, requires_grad=True)
    z, _ = cell(x, LIFBoxFeedForwardState(v=torch.zeros(5, dtype=torch.float64)))
    (grad,) = torch.autograd.grad(z.sum(), x)
    u = 0.5 * x.detach() - 1.0  # v - v_th
    sig = torch.sigmoid(4 * u)
    expected = 0.5 * 4 * sig * (1 - sig)  # dv/dx = 0.5
    torch.testing.assert_close(grad, expected)
    # the reset is detached: the membrane after a spike carries no gradient through z
    x2 = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    z2, st = cell(x2, LIFBoxFeedForwardState(v=torch.zeros(1, dtype=torch.float64)))
    assert z2.item() == 1.0
    (g2,) = torch.autograd.grad(st.v.sum(), x2)
    assert g2.item() == 0.0  # (1 - z') * v with z' = 1 detached


def test_head_integrator_is_exponential_average():
    li = head_integrator(0.5)
    state = LIState(v=torch.zeros(2), i=torch.zeros(2))
    outs = []
    for x in ([1.0, 4.0], [1.0, 0.0], [3.0, 0.0]):
        out, state = li(torch.tensor(x), state)
        outs.append(out.tolist())
    assert outs == [[0.5, 2.0], [0.75, 1.0], [1.875, 0.5]]
    passthrough = head_integrator(1.0)
    out, _ = passthrough(torch.tensor([2.0, -3.0]), LIState(v=torch.ones(2), i=torch.zeros(2)))
    assert out.tolist() == [2.0, -3.0]


# ------------------------------------------------------------------ pooling
def test_spooling_aggregates_region_while_maxpool_keeps_maximum():
    one = torch.zeros(1, 1, 4, 4)
    one[0, 0, 0, 0] = 1.0
    four = torch.zeros(1, 1, 4, 4)
    four[0, 0, :2, :2] = 1.0
    maxpool = POOLINGS["max"].make()
    spool = SpikingResponsePool()
    assert maxpool(one)[0, 0, 0, 0] == maxpool(four)[0, 0, 0, 0] == 1.0
    # region of output (0, 0) is rows/cols -1..1 (padding not counted): 4 valid pixels
    assert spool(one)[0, 0, 0, 0].item() == pytest.approx(1 / 4)
    assert spool(four)[0, 0, 0, 0].item() == pytest.approx(4 / 4)
    assert spool(four).shape == maxpool(four).shape == (1, 1, 2, 2)
    assert POOLINGS["spool"].before_neuron and not POOLINGS["max"].before_neuron


def test_spool_model_pools_before_the_neuron():
    model = build_model(small_config(pooling="spool"))
    shapes = {n: s for n, s in zip(model.neuron_layers, model._neuron_shapes)}
    assert shapes["sps.0"] == (2, 8, 8)  # pooled before firing: 16 -> 8
    model = build_model(small_config(pooling="max"))
    shapes = {n: s for n, s in zip(model.neuron_layers, model._neuron_shapes)}
    assert shapes["sps.0"] == (2, 16, 16)  # fires at full size, spikes are pooled


# ---------------------------------------------------------------- attention
def test_ssa_mix_equals_naive_loops():
    g = torch.Generator().manual_seed(1)
    t, b, d, n, heads = 2, 1, 8, 5, 2
    q, k, v = ((torch.rand(t, b, d, n, generator=g) < 0.5).double() for _ in range(3))
    out = ssa_mix(q, k, v, heads, 0.25)
    dh = d // heads
    naive = torch.zeros_like(out)
    for ti in range(t):
        for c in range(d):
            h0 = (c // dh) * dh
            for i in range(n):
                total = 0.0
                for j in range(n):
                    score = sum(q[ti, 0, h0 + e, i] * k[ti, 0, h0 + e, j] for e in range(dh))
                    total += score * v[ti, 0, c, j]
                naive[ti, 0, c, i] = 0.25 * total
    torch.testing.assert_close(out, naive)


def test_lsssa_window_covering_grid_equals_ssa():
    # a window as large as the whole grid (dilation 1) is plain SSA
    cfg = small_config(attention="lsssa", lsssa_window=7, lsssa_dilations=(1,), lsssa_scale=0.25)
    attn = build_model(cfg).blocks[0].attn
    g = torch.Generator().manual_seed(2)
    q, k, v = ((torch.rand(2, 1, 16, 16, generator=g) < 0.5).double() for _ in range(3))
    torch.testing.assert_close(attn.local_mix(q, k, v), ssa_mix(q, k, v, cfg.heads, 0.25))


def test_lsssa_dilated_window_sees_only_dilated_neighbours():
    cfg = small_config(attention="lsssa", lsssa_window=3, lsssa_dilations=(2,), heads=1)
    attn = build_model(cfg).blocks[0].attn
    d, (rows, cols) = cfg.embed_dim, cfg.token_hw
    q = torch.zeros(1, 1, d, rows * cols, dtype=torch.float64)
    k = torch.zeros_like(q)
    v = torch.zeros_like(q)
    q[..., 0] = 1  # query token (0, 0)
    k[...] = 1
    v[..., 0, :] = torch.arange(rows * cols, dtype=torch.float64)  # channel 0 carries the token index
    out = attn.local_mix(q, k, v)[0, 0, 0, 0] / cfg.lsssa_scale
    # neighbours of (0, 0) at dilation 2 inside the 4x4 grid: (0,0), (0,2), (2,0), (2,2)
    idx = [0 * cols + 0, 0 * cols + 2, 2 * cols + 0, 2 * cols + 2]
    assert out.item() == pytest.approx(d * sum(idx))


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("variant", ["lrf", "sdsa", "lsssa", "ssa"])
def test_attention_memory_is_linear_except_ssa(variant):
    cfg = preset(
        "tiny", input_hw=(32, 32), patch_size=1, embed_dim=16, heads=2, depth=1, attention=variant
    )  # 32x32 = 1024 tokens
    n = cfg.n_tokens
    attn = build_model(cfg).blocks[0].attn.eval()
    x = torch.rand(1, 1, cfg.embed_dim, n) * 4
    run = Run(states=[layer.initial_state(1) for layer in _lifs(attn)])
    with torch.inference_mode(), _LargestTensor() as probe:
        attn(x, run)
    if variant == "ssa":
        assert probe.largest >= n * n  # the quadratic baseline does store N x N
    else:
        assert probe.largest < n * n // 4  # never anything of N x N size


def _lifs(module):
    from dvsapp.core.model.layers import LIFLayer

    layers = [m for m in module.modules() if isinstance(m, LIFLayer)]
    for i, layer in enumerate(layers):
        layer.slot = i
    return layers


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_taps(variant):
    cfg = small_config(attention=variant)
    model = activate(build_model(cfg)).eval()
    frames = event_frames((3, 2, 2, 16, 16))
    taps = TapRecorder()
    with torch.inference_mode():
        logits, state = model(frames, taps=taps)
    assert logits.shape == (3, 2, cfg.num_classes)
    assert isinstance(state, ModelState) and state.batch_size == 2
    assert len(state.neurons) == len(model.neuron_layers)
    assert set(taps.attention) == {0, 1}
    for block in (0, 1):
        for name in ("q", "k", "v", "out"):
            tap = taps.attention[block][name]
            assert tap.shape == (3, 2, cfg.heads, cfg.n_tokens) and tap.dtype == torch.float16
            assert 0.0 <= float(tap.min()) and float(tap.max()) <= 1.0
        assert taps.grid(block, "q").shape == (3, 2, cfg.heads, 4, 4)
    assert set(taps.rates) == set(model.neuron_layers)
    assert any(rate > 0 for rate in taps.rates.values())
    assert all(0.0 <= rate <= 1.0 for rate in taps.rates.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_stream_split_equals_one_call_float64(variant):
    model = activate(build_model(small_config(attention=variant)), seed=5).eval().double()
    frames = event_frames((10, 2, 2, 16, 16), seed=7, dtype=torch.float64)
    with torch.inference_mode():
        whole, state_whole = model(frames)
        parts, state = [], None
        for a, b in ((0, 1), (1, 4), (4, 5), (5, 10)):
            out, state = model(frames[a:b], state)
            parts.append(out)
    assert torch.equal(whole, torch.cat(parts))
    for s1, s2 in zip(state_whole.neurons, state.neurons):
        assert torch.equal(s1.v, s2.v)
    assert whole.abs().sum() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_stream_split_float32_close(variant):
    model = activate(build_model(small_config(attention=variant)), seed=2).eval()
    frames = event_frames((8, 1, 2, 16, 16), seed=3)
    with torch.inference_mode():
        whole, state_whole = model(frames)
        a, state = model(frames[:3])
        b, state = model(frames[3:], state)
    torch.testing.assert_close(whole, torch.cat([a, b]), rtol=1e-5, atol=1e-5)
    for s1, s2 in zip(state_whole.neurons, state.neurons):
        torch.testing.assert_close(s1.v, s2.v, rtol=1e-5, atol=1e-5)
    assert whole.abs().sum() > 0


def test_stem_conv_padded_to_eight_channels_equals_the_plain_convolution(monkeypatch):
    """What CUDA runs for the first convolution with ``StemConv.pad_to = 8`` (input channels
    padded with zeros; off by default) is the same map."""
    monkeypatch.setattr(StemConv, "pad_to", 8)
    model = build_model(small_config()).double()
    conv = model.sps.stages[0].conv
    assert conv.in_channels % 8  # 2 polarity channels: padded with 6 zero channels
    x = event_frames((3, 2, 16, 16), seed=4, dtype=torch.float64).requires_grad_()
    plain = conv(x)  # CPU: the plain path
    (plain * plain).sum().backward()
    gx, gw = x.grad.clone(), conv.weight.grad.clone()
    x.grad = None
    conv.weight.grad = None
    padded = conv.padded(x)
    (padded * padded).sum().backward()
    torch.testing.assert_close(padded, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, gx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv.weight.grad, gw, rtol=1e-12, atol=1e-12)
    assert conv.weight.grad.shape == conv.weight.shape and plain.abs().sum() > 0


def test_stem_conv_pads_in_half_precision_only():
    """The padding is for half-precision kernels (autocast or a half input); float32 (TF32 on
    CUDA) measured faster unpadded and runs the plain convolution."""
    x = torch.zeros(1, 2, 4, 4)
    assert not _half_precision(x)
    assert _half_precision(x.bfloat16()) and _half_precision(x.half())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _half_precision(x)


@pytest.mark.parametrize("variant", ["sdsa", "lrf"])
def test_channels_last_model_equals_the_contiguous_one(variant):
    """Moved to channels-last (as training on CUDA does), the model computes the same and its
    [C, H, W] membranes start and stay in that layout."""
    model = activate(build_model(small_config(attention=variant)), seed=5).eval().double()
    frames = event_frames((6, 2, 2, 16, 16), seed=8, dtype=torch.float64)
    with torch.inference_mode():
        ref, ref_state = model(frames)
        model.to(memory_format=torch.channels_last)
        rest = model.initial_state(2)
        a, state = model(frames[:2], rest)
        b, state = model(frames[2:], state)
    first = rest.neurons[0].v
    assert first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    assert not first.is_contiguous()
    torch.testing.assert_close(torch.cat([a, b]), ref, rtol=1e-9, atol=1e-9)
    for s1, s2 in zip(state.neurons, ref_state.neurons, strict=True):
        torch.testing.assert_close(s1.v, s2.v, rtol=1e-9, atol=1e-9)
    assert ref.abs().sum() > 0


def test_state_none_equals_explicit_initial_state():
    model = activate(build_model(small_config())).eval()
    frames = event_frames((4, 1, 2, 16, 16), seed=1)
    with torch.inference_mode():
        a, _ = model(frames)
        b, _ = model(frames, model.initial_state(1))
    assert torch.equal(a, b)


def test_gradients_flow_through_surrogate_and_detach_cuts_graph():
    model = activate(build_model(small_config(attention="sdsa")), seed=3).train()
    frames = event_frames((4, 2, 2, 16, 16), seed=4)
    logits, state = model(frames)
    logits.mean(0).logsumexp(-1).sum().backward()
    conv_grad = model.sps.stages[0].conv.weight.grad
    assert conv_grad is not None and conv_grad.abs().sum() > 0  # reached the first layer through spikes
    assert model.blocks[0].attn.q[0].weight.grad.abs().sum() > 0
    detached = state.detach()
    assert all(not s.v.requires_grad for s in detached.neurons)
    assert any(s.v.requires_grad for s in state.neurons)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bfloat16_forward_runs(variant):
    model = activate(build_model(small_config(attention=variant))).eval().to(torch.bfloat16)
    frames = event_frames((2, 1, 2, 16, 16), dtype=torch.bfloat16)
    with torch.inference_mode():
        logits, state = model(frames)
        logits2, _ = model(frames, state)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits2.float()).all()
    assert state.neurons[0].v.dtype == torch.bfloat16


def test_state_to_and_map():
    model = build_model(small_config())
    state = model.initial_state(3)
    moved = state.to(dtype=torch.float64)
    assert all(s.v.dtype == torch.float64 for s in moved.neurons)
    assert moved.head.v.shape == (3, model.config.num_classes)


def test_bad_frames_and_state_raise_config_error():
    model = build_model(small_config()).eval()
    with pytest.raises(ConfigError, match="do not fit"):
        model(torch.zeros(2, 1, 2, 32, 32))
    with pytest.raises(ConfigError, match="batch"):
        model(torch.zeros(2, 1, 2, 16, 16), model.initial_state(2))


# ------------------------------------------------------------------ config
def test_config_round_trip_and_presets():
    for name in ("tiny", "small", "sdt-2-256"):
        cfg = PRESETS[name]
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    sdt = PRESETS["sdt-2-256"]
    assert (sdt.input_hw, sdt.embed_dim, sdt.depth, sdt.heads, sdt.timesteps) == ((128, 128), 256, 2, 8, 16)
    assert sdt.token_hw == (16, 16) and sdt.stage_channels == (32, 64, 128, 256)
    assert sdt.pool_pattern == (False, True, True, True)  # pooling_stat "0111"
    assert PRESETS["tiny"].input_hw == (64, 64) and PRESETS["tiny"].attention == "sdsa"
    assert preset("tiny", attention="lrf").attention == "lrf"
    assert math.isclose(PRESETS["tiny"].tau_mem_inv * PRESETS["tiny"].neuron_dt_s, 0.5)


@pytest.mark.parametrize(
    "change",
    [
        {"attention": "softmax"},
        {"pooling": "avg"},
        {"patch_size": 3},
        {"heads": 5},
        {"lsssa_window": 4},
        {"input_hw": (60, 64)},
    ],
)
def test_bad_config_raises(change):
    with pytest.raises(ConfigError):
        preset("tiny", **change)


def test_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="no model preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="unknown field"):
        ModelConfig.from_dict({"embed_dims": 3})


def test_compiled_model_is_one_graph_per_step_and_matches_eager():
    """``torch.compile(fullgraph=True)``: a window with the state given compiles once, later windows reuse it."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = activate(build_model(small_config(depth=1)), seed=4).eval()
    frames = event_frames((6, 1, 2, 16, 16), seed=6)
    compiled = torch.compile(model, backend=counting_backend, fullgraph=True)
    try:
        with torch.inference_mode():
            expected, _ = model(frames)
            a, state = compiled(frames[:2])
            assert len(graphs) == 1  # state=None: one graph, no break (fullgraph)
            b, state = compiled(frames[2:4], state)
            assert len(graphs) == 2  # the state-given signature compiles once ...
            c, state = compiled(frames[4:], state)
            assert len(graphs) == 2  # ... and the next window reuses that graph
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(torch.cat([a, b, c]), expected, rtol=1e-6, atol=1e-6)
    assert expected.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("variant", VARIANTS)
def test_cuda_matches_cpu_and_state_moves(variant):
    model = activate(build_model(small_config(attention=variant)), seed=1).eval().double()
    frames = event_frames((6, 2, 2, 16, 16), seed=2, dtype=torch.float64)
    with torch.inference_mode():
        cpu_a, cpu_state = model(frames[:3])
        cpu_b, _ = model(frames[3:], cpu_state)
        model.cuda()
        gpu_b, gpu_state = model(frames[3:].cuda(), cpu_state.to("cuda"))
        bf_model = model.to(torch.bfloat16)
        bf, _ = bf_model(frames.cuda().bfloat16())
    torch.testing.assert_close(gpu_b.cpu(), cpu_b, rtol=1e-9, atol=1e-9)
    assert gpu_state.neurons[0].v.device.type == "cuda"
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_channels_last_training_on_cuda_hands_the_blocks_contiguous_tokens():
    """Trained channels-last on CUDA, the patch splitting's maps have D innermost; the tokens
    it returns are laid out contiguously once (the blocks' neurons and 1x1 convolutions would
    each copy them otherwise), and the membranes at rest come in the neurons' layout."""
    model = activate(build_model(small_config()), seed=1).cuda().to(memory_format=torch.channels_last)
    frames = event_frames((3, 2, 2, *model.config.input_hw), seed=2).cuda()
    state = model.initial_state(2)
    assert state.neurons[0].v.is_contiguous(memory_format=torch.channels_last)
    seen = []
    model.sps.register_forward_hook(lambda mod, args, out: seen.append(out))
    model(frames, state)
    (tokens,) = seen
    assert tokens.is_contiguous() and tokens.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("v_th", [1.0, 0.5])
@pytest.mark.parametrize("tau_mem_inv", [500.0, 300.0])  # gain 0.5 (products exact) and 0.3
def test_inference_steps_equal_the_norse_cell_bit_for_bit(dtype, v_th, tau_mem_inv):
    """The gradient-free path of LIFLayer gives exactly the Norse cell's spikes and membranes."""
    from dvsapp.core.model.layers import LIFLayer

    layer = LIFLayer("probe", (7, 9), v_th=v_th, tau_mem_inv=tau_mem_inv)
    layer.slot = 0
    g = torch.Generator().manual_seed(int(v_th * 10))
    # a mix of binary inputs (membranes landing exactly on the threshold) and real values
    x = torch.where(
        torch.rand(12, 3, 7, 9, generator=g) < 0.5,
        torch.randint(0, 3, (12, 3, 7, 9), generator=g).double(),
        torch.randn(12, 3, 7, 9, generator=g, dtype=torch.float64) * 1.5,
    ).to(dtype)
    v0 = (torch.rand(3, 7, 9, generator=g, dtype=torch.float64) * 1.2 - 0.1).to(dtype)
    v0[0, 0, :3] = torch.tensor([v_th, 0.0, 2 * v_th])
    with torch.enable_grad():
        run = Run(states=[LIFBoxFeedForwardState(v=v0)])
        reference = layer(x, run)
        ref_v = run.states[0].v
    with torch.inference_mode():
        run = Run(states=[LIFBoxFeedForwardState(v=v0)])
        fast = layer(x, run)
        fast_v = run.states[0].v
    assert fast.dtype == reference.dtype == dtype
    assert torch.equal(fast, reference) and torch.equal(fast_v, ref_v)
    assert 0 < float(fast.mean()) < 1  # both spikes and silences were compared
