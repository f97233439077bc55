"""3x3 / stride 2 / padding 1 max pooling as two GPU kernels (Triton), forward and backward.

The patch-splitting stages pool with ``nn.MaxPool2d(3, stride=2, padding=1)``. Under
``torch.compile`` Inductor generates that pooling itself, and its backward recomputes which
element of each window was the largest by reading the whole input again, nine loads per
window and four windows per element: on an H200 the backward of stage 1's pooling alone
(16 x 16 x 64 x 128 x 128 spikes) took 1.9 ms of a 22 ms training step
(`docs/training/gpu_speed_h200.md`). Here the forward writes, beside the maximum, one byte
per window saying where in the window it was (0-8, row-major), and the backward reads that
byte and the incoming gradient of the (at most four) windows that cover each element: one
pass, memory-bound.

The result is ``F.max_pool2d``'s exactly, values and gradients: the same element wins
(the first maximum in row-major order; a NaN wins over any number and a later NaN over an
earlier one; padding never wins), and each element's gradient is the sum of the gradients of
the windows it won. Both kernels work in the input's layout, contiguous or channels-last
(what cuDNN's convolutions give); other layouts are made contiguous first. Tested against
``F.max_pool2d`` on CUDA and, with ``TRITON_INTERPRET=1``, on the CPU.

Each program takes one row (an output row in the forward, an input row in the backward) and
the shapes are compile-time constants, so the per-element index arithmetic is 32-bit
multiplies and shifts and only a row's base offset is 64-bit. (A first version indexed one flat
range with 64-bit division by run-time sizes: on an H100 its backward took 1.6 ms per call,
compute-bound, and training was slower than with Inductor's pooling.)

The model pools with it in training on CUDA wherever Triton loads (inference keeps
``nn.MaxPool2d``: with no backward the position byte is not needed); ``DVSAPP_FUSED_POOL=0`` in the
environment at import turns it off (then ``nn.MaxPool2d`` runs, as Inductor compiles it).
Measured on an H100 in one call, compiled ``sdt-2-256`` training went from 618 to 664
samples/s in bf16 (1.07x) and from 356 to 366 in fp32 (1.03x) against Inductor's pooling
(``docs/training/gpu_speed_h100.md``).
"""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["MaxPool3x3s2", "fused_available", "load_kernels", "max_pool3x3s2"]


def _load():
    """The two Triton kernels, or ``None`` when Triton cannot be imported."""
    try:
        import triton
        import triton.language as tl
    except Exception:  # no Triton (the CPU wheel of torch): nn.MaxPool2d runs instead
        return None

    @triton.jit
    def pool_forward_kernel(
        x_ptr, y_ptr, code_ptr, sxn, sxc, sxh, sxw,
        C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
        CL: tl.constexpr, BLOCK: tl.constexpr, v_th, SPIKES: tl.constexpr,
    ):  # fmt: skip
        # SPIKES: x holds membranes and what is pooled is the spikes they fire, 1.0 where
        # x >= v_th, else 0.0 (fused_lif_pool: the neurons' spikes are never written)
        # One program: BLOCK outputs of one output row. Row r is (n, oh) channels-last, whose
        # OW * C outputs run (ow, c), or (n, c, oh) contiguous, whose OW outputs run ow. The
        # shapes are compile-time constants, so the index arithmetic is shifts and multiplies;
        # only the row's base offset is 64-bit.
        r = tl.program_id(0)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        oh = r % OH
        if CL:
            inner = OW * C
            c = j % C
            ow = j // C
            base = (r // OH).to(tl.int64) * sxn
            lane = c * sxc
        else:  # contiguous: n * sxn + c * sxc == (n * C + c) * sxc
            inner = OW
            ow = j
            base = (r // OH).to(tl.int64) * sxc
            lane = 0
        mask = j < inner
        best = tl.full((BLOCK,), float("-inf"), tl.float32)
        # nothing beats -inf: the first element inside the image wins, as in ATen
        code = tl.where(ow == 0, 1, 0) + tl.where(oh == 0, 3, 0)
        for kh in tl.static_range(3):
            ih = oh * 2 - 1 + kh
            # (a row test is a scalar: where() keeps the mask boolean under the interpreter too)
            row_mask = tl.where((ih >= 0) & (ih < H), mask, False)
            row = base + ih * sxh
            for kw in tl.static_range(3):
                iw = ow * 2 - 1 + kw
                ok = row_mask & (iw >= 0) & (iw < W)
                v = tl.load(x_ptr + row + (iw * sxw + lane), mask=ok, other=float("-inf")).to(tl.float32)
                if SPIKES:
                    v = tl.where(ok, tl.where(v >= v_th, 1.0, 0.0), float("-inf"))
                take = ok & ((v > best) | (v != v))
                best = tl.where(take, v, best)
                code = tl.where(take, kh * 3 + kw, code)
        out = r.to(tl.int64) * inner + j
        tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), mask=mask)
        tl.store(code_ptr + out, code.to(tl.int8), mask=mask)

    @triton.jit
    def window_grads(
        gy_ptr, code_ptr, r, j, mask,
        C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
        CL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # The gradient of BLOCK elements j of input row r (n, ih) channels-last or (n, c, ih)
        # contiguous: the sum, in float32 and in a fixed order, of the output gradients of the
        # (at most four) windows that each element won. gy and code are dense in the layout,
        # so both are read at the same offsets. Element row ih sits at kernel row kh of output
        # row oh when ih = 2 * oh - 1 + kh. (fused_lif_pool's backward calls it too.)
        ih = r % H
        if CL:
            out_inner = OW * C
            step = C
            c = j % C
            iw = j // C
        else:
            out_inner = OW
            step = 1
            c = 0
            iw = j
        acc = tl.zeros((BLOCK,), tl.float32)
        for kh in tl.static_range(3):
            num_h = ih + 1 - kh
            oh = num_h // 2
            row_mask = tl.where((num_h >= 0) & (num_h % 2 == 0) & (oh < OH), mask, False)
            row = ((r // H) * OH + oh).to(tl.int64) * out_inner
            for kw in tl.static_range(3):
                num_w = iw + 1 - kw
                ow = num_w // 2
                ok = row_mask & (num_w >= 0) & (num_w % 2 == 0) & (ow < OW)
                at = row + (ow * step + c)
                won = tl.load(code_ptr + at, mask=ok, other=-1)
                hit = ok & (won == kh * 3 + kw)
                g = tl.load(gy_ptr + at, mask=hit, other=0.0)
                acc += g.to(tl.float32)
        return acc

    global _window_grads
    _window_grads = window_grads  # called by its global name (Triton resolves names there)

    @triton.jit
    def pool_backward_kernel(
        gy_ptr, code_ptr, gx_ptr,
        C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
        CL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # One program: BLOCK elements of one input row (n, ih) or (n, c, ih), as in the forward.
        r = tl.program_id(0)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inner = W * C if CL else W
        mask = j < inner
        acc = _window_grads(gy_ptr, code_ptr, r, j, mask, C, H, W, OH, OW, CL, BLOCK)
        tl.store(gx_ptr + r.to(tl.int64) * inner + j, acc.to(gx_ptr.dtype.element_ty), mask=mask)

    return pool_forward_kernel, pool_backward_kernel


_window_grads = None  # set by _load: the backward's per-element sum, shared with fused_lif_pool
_BLOCK = 1024  # the most elements of one row a program takes
_ENABLED = os.environ.get("DVSAPP_FUSED_POOL", "1") != "0"  # whether the model's pooling uses the kernels
_kernels = None  # (forward, backward) once loaded


def load_kernels() -> bool:
    """Define the kernels (imports Triton) once; ``True`` when they are there to run.

    Runs at import when CUDA is available; tests with Triton's interpreter
    (``TRITON_INTERPRET=1`` set first) call it themselves. :func:`max_pool3x3s2` runs
    whenever they are loaded; the model's pooling too unless ``DVSAPP_FUSED_POOL=0``.
    """
    global _kernels
    if _kernels is None:
        _kernels = _load()
    return _kernels is not None


def _triton():
    if _kernels is None:
        raise RuntimeError("the fused pooling kernels are not loaded (no Triton)")
    return _kernels


def _channels_last(x: torch.Tensor) -> bool:
    """Whether the kernels run ``x`` channels-last (else contiguous)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _in_layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``x`` as the kernels take it (itself, or a contiguous copy) and whether channels-last."""
    cl = _channels_last(x)
    return (x if cl or x.is_contiguous() else x.contiguous()), cl


def _pooled_hw(h: int, w: int) -> tuple[int, int]:
    return (h + 1) // 2, (w + 1) // 2


def _launch(rows: int, inner: int, most: int = _BLOCK) -> tuple[tuple[int, int], int]:
    """Grid and block of a launch over ``rows`` rows of ``inner`` elements each, at most
    ``most`` elements a program."""
    block = min(most, 1 << max(inner - 1, 0).bit_length())
    return (rows, (inner + block - 1) // block), block


def _format(cl: bool) -> torch.memory_format:
    return torch.channels_last if cl else torch.contiguous_format


@torch.library.custom_op("dvsapp::max_pool3x3s2_forward", mutates_args=())
def _pool_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fwd, _ = _triton()
    x, cl = _in_layout(x)
    nb, c, h, w = x.shape
    oh, ow = _pooled_hw(h, w)
    y = torch.empty((nb, c, oh, ow), device=x.device, dtype=x.dtype, memory_format=_format(cl))
    code = torch.empty((nb, c, oh, ow), device=x.device, dtype=torch.int8, memory_format=_format(cl))
    if y.numel():
        grid, block = _launch(nb * oh if cl else nb * c * oh, ow * c if cl else ow)
        fwd[grid](
            x, y, code, *x.stride(), C=c, H=h, W=w, OH=oh, OW=ow, CL=cl, BLOCK=block, v_th=0.0, SPIKES=False
        )
    return y, code


@_pool_forward.register_fake
def _(x):
    cl = _channels_last(x)
    nb, c, h, w = x.shape
    oh, ow = _pooled_hw(h, w)
    y = x.new_empty((nb, c, oh, ow)).contiguous(memory_format=_format(cl))
    return y, y.to(torch.int8)


@torch.library.custom_op("dvsapp::max_pool3x3s2_backward", mutates_args=())
def _pool_backward(gy: torch.Tensor, code: torch.Tensor, h: int, w: int, channels_last: bool) -> torch.Tensor:
    _, bwd = _triton()
    nb, c, oh, ow = code.shape
    fmt = _format(channels_last)
    gy = gy.contiguous(memory_format=fmt)  # dense in the layout of code (as autograd mostly gives it)
    gx = torch.empty((nb, c, h, w), device=gy.device, dtype=gy.dtype, memory_format=fmt)
    if gx.numel():
        grid, block = _launch(nb * h if channels_last else nb * c * h, w * c if channels_last else w)
        bwd[grid](gy, code, gx, C=c, H=h, W=w, OH=oh, OW=ow, CL=channels_last, BLOCK=block)
    return gx


@_pool_backward.register_fake
def _(gy, code, h, w, channels_last):
    nb, c = code.shape[:2]
    return gy.new_empty((nb, c, h, w)).contiguous(memory_format=_format(channels_last))


def _setup_context(ctx, inputs, output):
    (x,) = inputs
    ctx.save_for_backward(output[1])
    ctx.hw = tuple(x.shape[-2:])
    ctx.channels_last = _channels_last(x)


def _backward(ctx, gy, _gcode):
    (code,) = ctx.saved_tensors
    return _pool_backward(gy, code, ctx.hw[0], ctx.hw[1], ctx.channels_last)


_pool_forward.register_autograd(_backward, setup_context=_setup_context)


def fused_available(x: torch.Tensor) -> bool:
    """Whether the model's pooling runs the kernels on ``x``: not turned off (``DVSAPP_FUSED_POOL=0``),
    the kernels loaded, ``x`` a 4-D floating CUDA tensor, and a gradient to come (training).

    Without a backward (inference) the winner's position would be written for nothing, and
    Inductor fuses its own pooling with the work around it, so ``nn.MaxPool2d`` runs.
    (:func:`max_pool3x3s2` itself also runs on CPU tensors under Triton's interpreter.)
    """
    return (
        _ENABLED
        and _kernels is not None
        and x.is_cuda
        and x.dim() == 4
        and x.is_floating_point()
        and x.requires_grad
        and torch.is_grad_enabled()
    )


def max_pool3x3s2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride=2, padding=1)`` of ``x [N, C, H, W]`` by the two kernels."""
    return _pool_forward(x)[0]


class MaxPool3x3s2(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride=2, padding=1)`` that runs the fused kernels where :func:`fused_available`."""

    def __init__(self) -> None:
        super().__init__(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_available(x):
            return max_pool3x3s2(x)
        return super().forward(x)


if torch.cuda.is_available():
    load_kernels()
