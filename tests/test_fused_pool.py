"""The fused 3x3 / stride 2 max pooling (two Triton kernels) against ``F.max_pool2d``.

On a CUDA device the real kernels run; without one, Triton's interpreter runs them on the
CPU when Triton is installed (it is not part of the CPU build of torch: these tests skip).
The model's pooling uses them on CUDA (``DVSAPP_FUSED_POOL=0`` turns that off); on the CPU
the model test turns them on by patching ``fused_available``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dvsapp.core.model import fused_lif, fused_pool
from tests.kernel_models import event_frames, firing_model, kernel_device


def _device():
    device = kernel_device(fused_pool)
    assert fused_pool.load_kernels()
    return device


def _reference(x, gy):
    xr = x.detach().clone().requires_grad_()
    y = F.max_pool2d(xr, 3, stride=2, padding=1)
    y.backward(gy)
    return y.detach(), xr.grad


def _fused(x, gy):
    xf = x.detach().clone().requires_grad_()  # clone keeps the layout
    y = fused_pool.max_pool3x3s2(xf)
    y.backward(gy)
    return y.detach(), xf.grad


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("hw", [(9, 7), (8, 10)])
@pytest.mark.parametrize("kind", ["spikes", "ties", "real"])
def test_equals_max_pool2d_values_and_gradients(layout, hw, kind):
    device = _device()
    g = torch.Generator().manual_seed(hash((kind, hw)) % 1000)
    shape = (3, 5, *hw)
    if kind == "spikes":  # what the stages pool: many windows all 0, many with several 1s
        x = (torch.rand(shape, generator=g) < 0.3).float()
    elif kind == "ties":
        x = torch.randint(-2, 3, shape, generator=g).float()
    else:
        x = torch.randn(shape, generator=g)
    x = x.to(device).contiguous(memory_format=layout)
    y_out = (hw[0] + 1) // 2, (hw[1] + 1) // 2
    gy = torch.randn(3, 5, *y_out, generator=g).to(device)
    y_ref, gx_ref = _reference(x, gy)
    y, gx = _fused(x, gy)
    assert y.shape == y_ref.shape and torch.equal(y, y_ref)
    # the same winners (every window's gradient is nonzero), their sums of at most 4 gradients
    # added in another order
    assert torch.equal(gx != 0, gx_ref != 0)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)
    assert gx.is_contiguous(memory_format=layout) and y.is_contiguous(memory_format=layout)
    assert gx.abs().sum() > 0


def test_edge_values_and_half_precision():
    device = _device()
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, :2, :2] = float("-inf")  # window (0, 0) holds nothing but -inf: its first element wins
    x[0, 1, 1, 1] = float("nan")  # NaN wins, as in ATen
    x[0, 1, 2, 3] = float("nan")
    x = x.to(device)
    gy = torch.arange(1.0, 9.0).reshape(1, 2, 2, 2).to(device)
    y_ref, gx_ref = _reference(x, gy)
    y, gx = _fused(x, gy)
    torch.testing.assert_close(y, y_ref, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(gx != 0, gx_ref != 0)

    spikes = (torch.rand(2, 4, 11, 6) < 0.25).to(device=device, dtype=torch.bfloat16)
    gy = torch.randn(2, 4, 6, 3).to(device=device, dtype=torch.bfloat16)
    y_ref, gx_ref = _reference(spikes.float(), gy.float())
    y, gx = _fused(spikes, gy)
    assert y.dtype == torch.bfloat16 and torch.equal(y.float(), y_ref)
    torch.testing.assert_close(gx.float(), gx_ref, rtol=1e-2, atol=1e-2)  # sums rounded to bfloat16


def test_a_non_dense_input_and_gradient_are_taken_as_they_are():
    device = _device()
    x = torch.randn(2, 3, 10, 12).to(device)[:, :, ::2, 1:]  # a strided view
    gy = torch.randn(2, 3, 1, 1).to(device).expand(2, 3, 3, 6)  # a broadcast gradient
    y_ref, gx_ref = _reference(x, gy)
    y, gx = _fused(x, gy)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)


def test_the_model_pools_with_the_kernels_as_with_max_pool2d_eager_and_compiled(monkeypatch):
    device = _device()
    monkeypatch.setattr(fused_lif, "fused_available", lambda x, v, **_: False)  # the pooling alone
    cfg, model = firing_model(device, seed=4)
    assert sum(isinstance(m, fused_pool.MaxPool3x3s2) for m in model.modules()) == sum(cfg.pool_pattern) > 0
    model.to(memory_format=torch.channels_last).train()
    frames = event_frames(4, 2, device)
    labels = torch.randint(0, cfg.num_classes, (8,)).to(device)

    def step(net, fused):
        monkeypatch.setattr(fused_pool, "fused_available", lambda x: fused and x.dim() == 4)
        model.zero_grad()
        logits, _ = net(frames, model.initial_state(2))
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    ref, ref_grads = step(model, False)
    for compiled in (False, True):
        torch._dynamo.reset()
        try:
            logits, grads = step(torch.compile(model) if compiled else model, True)
        finally:
            torch._dynamo.reset()
        torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-3, atol=max(1e-5, 1e-3 * float(r.abs().max())))
    assert ref.abs().sum() > 0
