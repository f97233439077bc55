"""LIF then max pooling in one pass (``fused_lif_pool``) against the two kernels run one after the other.

On a CUDA device the real kernels run; without one, Triton's interpreter runs them on the
CPU when Triton is installed (not part of the CPU build of torch: these tests skip there).
"""

from __future__ import annotations

import pytest
import torch

from dvsapp.core.model import fused_lif, fused_lif_pool, fused_pool
from dvsapp.core.model.layers import LIFLayer
from tests.kernel_models import event_frames, firing_model, kernel_device


def _device():
    device = kernel_device(fused_lif_pool)
    if not fused_lif_pool.load_kernels():
        pytest.skip("the fused LIF is turned off (DVSAPP_FUSED_LIF=0)")
    return device


def _inputs(shape, layout, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    t, b, c, h, w = shape
    # binary inputs land membranes exactly on the threshold (0.5 * 0 + 0.5 * 2 = 1)
    x = torch.where(
        torch.rand(shape, generator=g) < 0.4,
        torch.randint(0, 3, shape, generator=g).float(),
        torch.randn(shape, generator=g) * 1.5 + 0.4,
    )
    x = x.reshape(t * b, c, h, w).contiguous(memory_format=layout).reshape(shape)  # steps in the layout
    v0 = torch.rand(b, c, h, w, generator=g).contiguous(memory_format=layout)
    oh, ow = (h + 1) // 2, (w + 1) // 2
    wy = torch.randn(t, b, c, oh, ow, generator=g)
    wv = torch.randn(b, c, h, w, generator=g)
    return x.to(device=device, dtype=dtype), v0.to(device), wy.to(device), wv.to(device)


def _unfused(layer, x, v0, wy, wv):
    xg, vg = x.clone().requires_grad_(), v0.clone().requires_grad_()  # clone keeps the layout
    z, v = fused_lif.lif_sequence(xg, vg, **layer._fused)
    y = fused_pool.max_pool3x3s2(z.flatten(0, 1)).unflatten(0, z.shape[:2])
    ((y * wy).sum() + (v * wv).sum()).backward()
    return y.detach(), v.detach(), xg.grad, vg.grad


def _fused(layer, x, v0, wy, wv):
    xg, vg = x.clone().requires_grad_(), v0.clone().requires_grad_()
    y, v = fused_lif_pool.lif_max_pool(xg, vg, **layer._fused)
    ((y * wy).sum() + (v * wv).sum()).backward()
    return y.detach(), v.detach(), xg.grad, vg.grad


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("hw", [(9, 7), (8, 10)])
def test_equals_lif_then_pooling_bit_for_bit_in_float32(layout, hw):
    device = _device()
    layer = LIFLayer("probe", (5, *hw)).to(device)
    x, v0, wy, wv = _inputs((4, 3, 5, *hw), layout, torch.float32, seed=hw[0], device=device)
    y_ref, v_ref, gx_ref, gv_ref = _unfused(layer, x, v0, wy, wv)
    y, v, gx, gv = _fused(layer, x, v0, wy, wv)
    assert 0 < y.sum() < y.numel()  # windows with and without a spike
    assert torch.equal(y, y_ref) and torch.equal(v, v_ref)
    # the same window sums in the same order, the same float32 arithmetic
    assert torch.equal(gx, gx_ref) and torch.equal(gv, gv_ref)
    assert gx.abs().sum() > 0 and gv.abs().sum() > 0
    # in the steps' layout, as the unfused kernels give them (no copy in or out)
    assert gx.stride() == x.stride() and y.stride() == y_ref.stride()


def test_half_precision_spikes_equal_and_gradients_close():
    """Under autocast the spikes are the unfused ones exactly; the surrogate reads float32
    membranes here (bfloat16 ones unfused), so the gradients agree to bfloat16 rounding."""
    device = _device()
    layer = LIFLayer("probe", (6, 8, 8), v_th=0.5).to(device)
    x, v0, wy, wv = _inputs((5, 2, 6, 8, 8), torch.channels_last, torch.bfloat16, seed=5, device=device)
    y_ref, v_ref, gx_ref, gv_ref = _unfused(layer, x, v0, wy, wv)
    y, v, gx, gv = _fused(layer, x, v0, wy, wv)
    assert y.dtype == torch.bfloat16 and gx.dtype == torch.bfloat16
    assert torch.equal(y, y_ref) and torch.equal(v, v_ref)
    torch.testing.assert_close(gx.float(), gx_ref.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gv, gv_ref, rtol=2e-2, atol=2e-2)


def test_the_model_fires_and_pools_in_one_pass_as_in_two_eager_and_compiled(monkeypatch):
    device = _device()
    cfg, model = firing_model(device, seed=6)
    stages = [s for s in model.modules() if getattr(s, "lif_then_max_pool", False)]
    assert stages  # the preset has a stage that fires, then pools
    monkeypatch.setattr(fused_lif, "fused_available", lambda x, v, **_: v.dtype == torch.float32)
    monkeypatch.setattr(fused_pool, "fused_available", lambda x: x.dim() == 4)
    model.to(memory_format=torch.channels_last).train()
    frames = event_frames(4, 2, device)
    labels = torch.randint(0, cfg.num_classes, (8,)).to(device)
    calls = []
    real = fused_lif_pool.lif_max_pool

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    def step(net, fused):
        monkeypatch.setattr(fused_lif_pool, "fused_available", lambda x, v: fused and x.dim() == 5)
        model.zero_grad()
        logits, state = net(frames, model.initial_state(2))
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()], state.detach()

    ref, ref_grads, ref_state = step(model, False)
    for compiled in (False, True):
        torch._dynamo.reset()
        monkeypatch.setattr(fused_lif_pool, "lif_max_pool", counted if not compiled else real)
        try:
            logits, grads, state = step(torch.compile(model) if compiled else model, True)
        finally:
            torch._dynamo.reset()
        if not compiled:
            assert len(calls) == len(stages)  # the stages took the fused path
        torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
        for a, b in zip(state.neurons, ref_state.neurons, strict=True):
            torch.testing.assert_close(a.v, b.v, rtol=1e-5, atol=1e-5)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-3, atol=max(1e-5, 1e-3 * float(r.abs().max())))
    assert ref.abs().sum() > 0
