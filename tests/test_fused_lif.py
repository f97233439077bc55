"""The fused multi-step LIF (one Triton kernel per layer) against the Norse cell it replaces.

On a CUDA device the real kernels run; without one, Triton's interpreter runs the same
kernels on the CPU when Triton is installed (it is not part of the CPU build of torch,
so these tests skip there).
"""

from __future__ import annotations

import pytest
import torch

from dvsapp.core.model import fused_lif
from dvsapp.core.model.layers import LIFLayer
from dvsapp.core.model.neurons import LIFBoxFeedForwardState
from tests.kernel_models import event_frames, firing_model, kernel_device


def _device():
    device = kernel_device(fused_lif)
    if not fused_lif.load_kernels():
        pytest.skip("the fused LIF is turned off (DVSAPP_FUSED_LIF=0)")
    return device


def _cell_steps(layer, x, v0):
    """The Norse cell, one call per step, with autograd (the path the fused kernel replaces)."""
    state = LIFBoxFeedForwardState(v=v0)
    out = []
    for t in range(x.shape[0]):
        z, state = layer.cell(x[t], state)
        out.append(z)
    return torch.stack(out), state.v


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("v_th", [1.0, 0.5])
def test_fused_lif_equals_the_norse_cell_forward_and_backward(dtype, v_th):
    device = _device()
    layer = LIFLayer("probe", (5, 7), v_th=v_th).to(device)
    g = torch.Generator().manual_seed(int(10 * v_th))
    # binary inputs land membranes exactly on the threshold (v = 0.5 * 0 + 0.5 * 2 = 1)
    x = torch.where(
        torch.rand(9, 3, 5, 7, generator=g) < 0.4,
        torch.randint(0, 3, (9, 3, 5, 7), generator=g).float(),
        torch.randn(9, 3, 5, 7, generator=g) * 1.5 + 0.5,
    ).to(device=device, dtype=dtype)
    v0 = (torch.rand(3, 5, 7, generator=g) * v_th).to(device)
    wz = torch.randn(9, 3, 5, 7, generator=g).to(device)
    wv = torch.randn(3, 5, 7, generator=g).to(device)

    xa, va = x.clone().requires_grad_(), v0.clone().requires_grad_()
    z_ref, v_ref = _cell_steps(layer, xa, va)
    ((z_ref * wz).sum() + (v_ref * wv).sum()).backward()

    xb, vb = x.clone().requires_grad_(), v0.clone().requires_grad_()
    z, v = fused_lif.lif_sequence(xb, vb, **layer._fused)
    ((z * wz).sum() + (v * wv).sum()).backward()

    # the cell promotes to float32; the fused spikes stay in a half-precision input's dtype
    assert z_ref.dtype == torch.float32 and z.dtype == dtype and v.dtype == torch.float32
    assert 0 < z.sum() < z.numel()  # some neurons fire, some do not
    # the forward is the cell's arithmetic: equal bit for bit (gain 0.5 is a power of two)
    assert torch.equal(z.float(), z_ref) and torch.equal(v, v_ref)
    # the surrogate is evaluated in another (equal) form: float32 rounding; under bfloat16
    # it reads the membrane kept in bfloat16 and the input gradient is rounded to bfloat16
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(xb.grad, xa.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(vb.grad, va.grad, rtol=tol, atol=tol / 10 if dtype == torch.float32 else tol)
    assert xb.grad.abs().sum() > 0 and vb.grad.abs().sum() > 0

    with torch.no_grad():  # inference: nothing kept for a backward, same values
        z2, v2 = fused_lif.lif_sequence(x, v0, **layer._fused)
    assert torch.equal(z2.float(), z_ref) and torch.equal(v2, v_ref)


def test_the_model_on_the_fused_path_equals_the_cell_path_and_splits_into_windows(monkeypatch):
    device = _device()
    cfg, model = firing_model(device, seed=3)
    model.eval()
    frames = event_frames(6, 2, device)
    labels = torch.randint(0, cfg.num_classes, (6 * 2,)).to(device)

    def run(fused):
        monkeypatch.setattr(
            fused_lif, "fused_available", lambda x, v, **_: fused and v.dtype == torch.float32
        )
        model.zero_grad()
        logits, _ = model(frames)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        with torch.no_grad():
            a, s = model(frames[:4])
            b, _ = model(frames[4:], s)
        return logits.detach(), grads, torch.cat([a, b])

    ref_logits, ref_grads, _ = run(False)
    for layout in (torch.contiguous_format, torch.channels_last):  # channels-last: as trained on CUDA
        model.to(memory_format=layout)
        logits, grads, split = run(True)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(split, logits, rtol=1e-5, atol=1e-5)  # one call == split windows
        assert len(grads) == len(ref_grads)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-5)
        assert sum(g.abs().sum() for g in grads) > 0


def test_channels_last_steps_run_in_place_and_match_the_contiguous_layout():
    """Steps laid out channels-last (what cuDNN's convolutions give) are not copied: spikes,
    membrane and gradients come back in that layout with the values of the contiguous run."""
    device = _device()
    layer = LIFLayer("probe", (6, 5, 4)).to(device)
    g = torch.Generator().manual_seed(7)
    t, b = 5, 3
    base = (torch.randn(t * b, 6, 5, 4, generator=g) * 1.5 + 0.6).to(device)
    x_cl = base.contiguous(memory_format=torch.channels_last).reshape(t, b, 6, 5, 4)  # a view
    assert not x_cl.is_contiguous() and x_cl[0].is_contiguous(memory_format=torch.channels_last)
    x_c = x_cl.contiguous()
    v0 = (torch.rand(b, 6, 5, 4, generator=g)).to(device)  # contiguous: matched to x's layout
    wz = torch.randn(t, b, 6, 5, 4, generator=g).to(device)
    wv = torch.randn(b, 6, 5, 4, generator=g).to(device)

    def run(x):
        xg, vg = x.clone().requires_grad_(), v0.clone().requires_grad_()  # clone keeps the layout
        z, v = fused_lif.lif_sequence(xg, vg, **layer._fused)
        ((z * wz).sum() + (v * wv).sum()).backward()
        return z, v, xg.grad, vg.grad

    z_c, v_c, gx_c, gv_c = run(x_c)
    z_l, v_l, gx_l, gv_l = run(x_cl)
    assert z_l.stride() == x_cl.stride() and gx_l.stride() == x_cl.stride()
    assert v_l.is_contiguous(memory_format=torch.channels_last) and not v_l.is_contiguous()
    assert 0 < z_c.sum() < z_c.numel()
    assert torch.equal(z_l, z_c) and torch.equal(v_l, v_c)
    torch.testing.assert_close(gx_l, gx_c, rtol=0, atol=0)
    torch.testing.assert_close(gv_l, gv_c, rtol=0, atol=0)


def test_compiled_channels_last_model_on_the_fused_path_equals_eager(monkeypatch):
    """What training on CUDA runs: channels-last weights, ``torch.compile``, the fused LIF as a
    custom op in the graph (its fake outputs laid out as the real ones), forward and backward."""
    device = _device()
    monkeypatch.setattr(fused_lif, "fused_available", lambda x, v, **_: v.dtype == torch.float32)
    # float32 convolutions on both sides (cuDNN's default TF32 rounds inputs to 10 bits; cuBLAS's
    # default is float32 already)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cfg, model = firing_model(device, seed=5)
    model.to(memory_format=torch.channels_last).train()
    frames = event_frames(4, 2, device)
    labels = torch.randint(0, cfg.num_classes, (8,)).to(device)

    def step(net):
        model.zero_grad()
        logits, state = net(frames, model.initial_state(2))
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()], state

    ref, ref_grads, _ = step(model)
    torch._dynamo.reset()
    try:
        logits, grads, state = step(torch.compile(model))
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        # sums run in another order (Inductor's BN reductions, cuDNN's algorithm choice), and a
        # weight's gradient is a sum of many terms: the tolerance is set by each tensor's scale
        torch.testing.assert_close(g, r, rtol=1e-3, atol=max(1e-5, 1e-3 * float(r.abs().max())))
    assert state.neurons[0].v.is_contiguous(memory_format=torch.channels_last)
    assert ref.abs().sum() > 0 and sum(g.abs().sum() for g in grads) > 0
