"""The 3x3 convolutions' weight gradient as one Triton kernel (fp32 training on CUDA; opt-in).

In fp32 (TF32) training of ``sdt-2-256`` the largest single kernel is cuDNN's weight
gradient of stage 1 (32 -> 64 channels at 128 x 128, batch 16 x T 16): 2.9 ms on an H100,
where the forward, the same number of multiply-adds, takes 0.8 ms
(``benchmarks/gpu_convs.py``). A weight gradient is a sum over every output pixel of
``gy[p] (outer) x[p + tap]``: an implicit matrix product with a short output
(``C_out x C_in`` per tap) and a long reduction (4.2 M pixels). Here each program reduces
one chunk of pixels for all nine taps at once: it reads a tile of the output gradient once
and multiplies it (TF32, on the tensor cores, as cuDNN's with TF32 allowed) with the nine
shifted tiles of the input; the chunks' partial sums are then added by one ``sum``.

:class:`Conv3x3` (the patch-splitting convolutions after the stem) runs its backward this
way when :func:`fused_available` says so: ``DVSAPP_TRITON_WGRAD=1`` in the environment at
import, float32 without autocast, channels-last, no bias, channel counts multiples of 16.
Off by default until a GPU measurement shows it faster than cuDNN's
(``benchmarks/gpu_wgrad.py`` times the two on the model's shapes; ``benchmarks/speed_gpu.sh``
the training step with and without). The forward and the input gradient stay cuDNN's.
Tested against autograd's gradients on the CPU through Triton's interpreter.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv3x3", "conv3x3_weight_grad", "fused_available", "load_kernels"]


def _load():
    """The kernel, or ``None`` when Triton cannot be imported."""
    global _wgrad_tap  # the kernel calls it by its global name (Triton resolves names there)
    try:
        import triton
        import triton.language as tl
    except Exception:  # no Triton (the CPU wheel of torch): cuDNN's / ATen's weight gradient runs
        return None

    @triton.jit
    def _wgrad_tap(gt, x_ptr, p, pm, h, w, c, DY: tl.constexpr, DX: tl.constexpr, H: tl.constexpr,
                    W: tl.constexpr, CI: tl.constexpr):  # fmt: skip
        # gt [BO, BP] times the input tile shifted by (DY, DX), [BP, BC]; zero outside the image
        ok = pm & (h + DY >= 0) & (h + DY < H) & (w + DX >= 0) & (w + DX < W)
        src = (p + (DY * W + DX)) * CI
        xs = tl.load(x_ptr + src[:, None] + c[None, :], mask=ok[:, None], other=0.0)
        return tl.dot(gt, xs)

    @triton.jit
    def wgrad_kernel(
        x_ptr, gy_ptr, part_ptr, P, chunk,
        H: tl.constexpr, W: tl.constexpr, CI: tl.constexpr, CO: tl.constexpr,
        BO: tl.constexpr, BC: tl.constexpr, BP: tl.constexpr,
    ):  # fmt: skip
        # x [P, CI] and gy [P, CO]: channels-last pixels (n, h, w) in order;
        # part [chunks, 9, CO, CI]: this program's sums over its chunk of pixels, tap by tap
        pid = tl.program_id(0)
        o = tl.program_id(1) * BO + tl.arange(0, BO)
        c = tl.program_id(2) * BC + tl.arange(0, BC)
        a0 = tl.zeros((BO, BC), tl.float32)
        a1 = tl.zeros((BO, BC), tl.float32)
        a2 = tl.zeros((BO, BC), tl.float32)
        a3 = tl.zeros((BO, BC), tl.float32)
        a4 = tl.zeros((BO, BC), tl.float32)
        a5 = tl.zeros((BO, BC), tl.float32)
        a6 = tl.zeros((BO, BC), tl.float32)
        a7 = tl.zeros((BO, BC), tl.float32)
        a8 = tl.zeros((BO, BC), tl.float32)
        start = pid.to(tl.int64) * chunk
        for k in range(0, chunk, BP):
            p = start + k + tl.arange(0, BP)
            pm = p < P
            w = (p % W).to(tl.int32)
            h = ((p // W) % H).to(tl.int32)
            g = tl.load(gy_ptr + p[:, None] * CO + o[None, :], mask=pm[:, None], other=0.0)
            gt = tl.trans(g)
            a0 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, -1, -1, H, W, CI)
            a1 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, -1, 0, H, W, CI)
            a2 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, -1, 1, H, W, CI)
            a3 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 0, -1, H, W, CI)
            a4 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 0, 0, H, W, CI)
            a5 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 0, 1, H, W, CI)
            a6 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 1, -1, H, W, CI)
            a7 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 1, 0, H, W, CI)
            a8 += _wgrad_tap(gt, x_ptr, p, pm, h, w, c, 1, 1, H, W, CI)
        out = part_ptr + pid.to(tl.int64) * (9 * CO * CI) + o[:, None] * CI + c[None, :]
        tl.store(out + 0 * CO * CI, a0)
        tl.store(out + 1 * CO * CI, a1)
        tl.store(out + 2 * CO * CI, a2)
        tl.store(out + 3 * CO * CI, a3)
        tl.store(out + 4 * CO * CI, a4)
        tl.store(out + 5 * CO * CI, a5)
        tl.store(out + 6 * CO * CI, a6)
        tl.store(out + 7 * CO * CI, a7)
        tl.store(out + 8 * CO * CI, a8)

    return wgrad_kernel


_wgrad_tap = None  # set by _load: one tap's product, called from the kernel
# tile sizes: output channels, input channels, pixels per step; programs to aim for (a few
# per SM of an H100 / H200); the chunk of pixels a program reduces is a multiple of _BP.
# Compiled for sm_90 (Triton 3.9, on the CPU), 64 x 32 x 64 with 8 warps runs the products on
# wgmma in 218 registers a thread and no spills; 128 pixels spill (255 registers, 248 bytes of stack)
_BO, _BC, _BP, _PROGRAMS, _WARPS = 64, 32, 64, 528, 8
_ENABLED = os.environ.get("DVSAPP_TRITON_WGRAD", "0") == "1"
_kernel = None


def load_kernels() -> bool:
    """Define the kernel (imports Triton) once; ``True`` when it is there to run.

    Runs at import when CUDA is available; tests with Triton's interpreter
    (``TRITON_INTERPRET=1`` set first) call it themselves.
    """
    global _kernel
    if _kernel is None:
        _kernel = _load()
    return _kernel is not None


def weight_grad(
    x: torch.Tensor, gy: torch.Tensor, *, pixels_per_step: int = _BP, warps: int = _WARPS
) -> torch.Tensor:
    """The kernel's launch (what :func:`conv3x3_weight_grad` runs), its pixel tile and warp
    count as given (``benchmarks/gpu_wgrad.py`` times others)."""
    if _kernel is None:
        raise RuntimeError("the weight-gradient kernel is not loaded (no Triton)")
    n, ci, hh, ww = x.shape
    co = gy.shape[1]
    bo, bc, bp = min(_BO, co), min(_BC, ci), pixels_per_step
    xf = x.permute(0, 2, 3, 1).contiguous()  # a view when x is channels-last
    gf = gy.permute(0, 2, 3, 1).contiguous()
    pixels = n * hh * ww
    tiles = (co // bo) * (ci // bc)
    steps = (pixels + bp - 1) // bp
    chunks = max(1, min(_PROGRAMS // tiles, steps))
    chunk = (steps + chunks - 1) // chunks * bp
    chunks = (pixels + chunk - 1) // chunk
    part = torch.empty(chunks, 9, co, ci, device=x.device, dtype=torch.float32)
    extra = {"num_warps": warps} if x.is_cuda else {}
    _kernel[(chunks, co // bo, ci // bc)](
        xf, gf, part, pixels, chunk, H=hh, W=ww, CI=ci, CO=co, BO=bo, BC=bc, BP=bp, **extra
    )
    return part.sum(0).permute(1, 2, 0).reshape(co, ci, 3, 3).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("dvsapp::conv3x3_weight_grad", mutates_args=())
def conv3x3_weight_grad(x: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``[CO, CI, 3, 3]`` of a 3x3 / stride 1 / padding 1 convolution of
    ``x [N, CI, H, W]`` with output gradient ``gy [N, CO, H, W]`` (float32; channels-last
    is read in place, other layouts are copied)."""
    return weight_grad(x, gy)


@conv3x3_weight_grad.register_fake
def _(x, gy):
    co, ci = gy.shape[1], x.shape[1]
    return x.new_empty((co, ci, 3, 3)).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("dvsapp::conv3x3", mutates_args=())
def _conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight, None, 1, 1)


@_conv3x3.register_fake
def _(x, weight):
    return F.conv2d(x, weight, None, 1, 1)


def _setup_context(ctx, inputs, output):
    x, weight = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, gy):
    x, weight = ctx.saved_tensors
    gx = None
    if ctx.needs_input_grad[0]:
        gx = torch.ops.aten.convolution_backward(
            gy, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
        )[0]
    gw = conv3x3_weight_grad(x, gy) if ctx.needs_input_grad[1] else None
    return gx, gw


_conv3x3.register_autograd(_backward, setup_context=_setup_context)


def fused_available(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether :class:`Conv3x3` runs ``conv`` on ``x`` with the kernel's weight gradient:
    turned on (``DVSAPP_TRITON_WGRAD=1``), the kernel loaded, ``x`` a float32 channels-last
    CUDA tensor outside autocast, a gradient to come, no bias, channels multiples of 16."""
    return (
        _ENABLED
        and _kernel is not None
        and x.is_cuda
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not torch.is_autocast_enabled(x.device.type)
        and torch.is_grad_enabled()
        and conv.weight.requires_grad
        and conv.bias is None
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and conv.in_channels % 16 == 0
        and conv.out_channels % 16 == 0
    )


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)`` whose weight gradient is the Triton
    kernel's where :func:`fused_available` (else the plain convolution). Parameters, hooks
    and counts are those of ``nn.Conv2d``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_available(x, self):
            return _conv3x3(x, self.weight)
        return super().forward(x)


def conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` with the kernel's weight gradient (the op itself, for tests)."""
    return _conv3x3(x, weight)


if torch.cuda.is_available():
    load_kernels()
