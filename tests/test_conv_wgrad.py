"""The 3x3 convolutions' weight gradient as one Triton kernel (``conv_wgrad``) against autograd's.

On a CUDA device the real kernel runs (TF32, as cuDNN's with TF32 allowed); without one,
Triton's interpreter runs it on the CPU in float32 when Triton is installed (not part of the
CPU build of torch: these tests skip there).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dvsapp.core.model import conv_wgrad
from dvsapp.core.model.conv_wgrad import Conv3x3
from tests.kernel_models import event_frames, firing_model, kernel_device


def _device():
    device = kernel_device(conv_wgrad)
    assert conv_wgrad.load_kernels()
    return device


def _tolerance(device, ref):
    # TF32 rounds each product's operands to 10 mantissa bits on the GPU
    return 5e-3 * float(ref.abs().max()) if device == "cuda" else 1e-5 * float(ref.abs().max())


@pytest.mark.parametrize("shape", [(3, 16, 32, 9, 7), (2, 32, 64, 8, 8), (2, 32, 16, 5, 12)])
def test_weight_and_input_gradients_equal_autograds(shape):
    device = _device()
    n, ci, co, h, w = shape
    g = torch.Generator().manual_seed(ci + co + h)
    cl = torch.channels_last
    x = (torch.rand(n, ci, h, w, generator=g) < 0.3).float().to(device).contiguous(memory_format=cl)
    weight = torch.randn(co, ci, 3, 3, generator=g).to(device).contiguous(memory_format=cl)
    gy = torch.randn(n, co, h, w, generator=g).to(device)

    xa, wa = x.clone().requires_grad_(), weight.clone().requires_grad_()
    ya = F.conv2d(xa, wa, None, 1, 1)
    ya.backward(gy)
    xb, wb = x.clone().requires_grad_(), weight.clone().requires_grad_()
    yb = conv_wgrad.conv3x3(xb, wb)
    yb.backward(gy)

    assert torch.equal(yb, ya)  # the forward is the same convolution
    torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=0)  # and so is the input gradient
    torch.testing.assert_close(wb.grad, wa.grad, rtol=0, atol=_tolerance(device, wa.grad))
    assert wb.grad.abs().sum() > 0 and wb.grad.shape == weight.shape
    # every tap lands in its place: the border taps see the zero padding
    direct = conv_wgrad.conv3x3_weight_grad(x, gy.contiguous(memory_format=cl))
    torch.testing.assert_close(direct, wa.grad, rtol=0, atol=_tolerance(device, wa.grad))


def test_the_model_trains_with_it_as_without_eager_and_compiled(monkeypatch):
    device = _device()
    cfg, model = firing_model(device, seed=8, embed_dim=128)  # stage channels 16, 32, 64, 128
    convs = [m for m in model.modules() if isinstance(m, Conv3x3)]
    assert len(convs) == 4 and all(m.in_channels % 16 == 0 for m in convs)
    model.to(memory_format=torch.channels_last).train()
    frames = event_frames(4, 2, device)
    labels = torch.randint(0, cfg.num_classes, (8,)).to(device)
    calls = []
    real = conv_wgrad.conv3x3_weight_grad

    def step(net, on):
        monkeypatch.setattr(
            conv_wgrad,
            "fused_available",
            lambda x, conv: (
                on
                and x.dim() == 4
                and x.is_contiguous(memory_format=torch.channels_last)
                and conv.in_channels % 16 == 0
                and conv.out_channels % 16 == 0
                and torch.is_grad_enabled()
            ),
        )
        model.zero_grad()
        logits, _ = net(frames, model.initial_state(2))
        F.cross_entropy(logits.flatten(0, 1), labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    ref, ref_grads = step(model, False)
    for compiled in (False, True):
        torch._dynamo.reset()
        if not compiled:
            monkeypatch.setattr(
                conv_wgrad, "conv3x3_weight_grad", lambda x, gy: calls.append(1) or real(x, gy)
            )
        else:
            monkeypatch.setattr(conv_wgrad, "conv3x3_weight_grad", real)
        try:
            logits, grads = step(torch.compile(model) if compiled else model, True)
        finally:
            torch._dynamo.reset()
        if not compiled:
            assert len(calls) == len(convs)  # every 3x3 convolution after the stem used it
        torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
        for gr, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(gr, r, rtol=1e-3, atol=max(1e-5, 1e-3 * float(r.abs().max())))
    assert ref.abs().sum() > 0
