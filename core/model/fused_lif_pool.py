"""LIF neurons followed by 3x3 / stride 2 max pooling of their spikes, fused (training on CUDA).

Patch-splitting stages 1 and 2 of ``sdt-2-256`` fire at full resolution and then pool the
spikes (the reference's order: conv, BN, LIF, max pool). Run one after the other, the fused
LIF (:mod:`fused_lif`) writes every spike and the membrane it keeps for the backward, the
pooling (:mod:`fused_pool`) reads the spikes back, and in the backward the pooling writes a
full-resolution spike gradient that the LIF's backward reads again. In float32 that is
34 bytes moved per neuron and step, mostly at stage 1's 16 x 16 x 64 x 128 x 128.

Here:

- the LIF's forward keeps its membranes (float32) and writes no spikes;
- the pooling reads the membranes and pools the spikes they fire (``h >= v_th``: the
  kernel's own test, so the same spikes), writing the pooled spikes and each window's winner;
- one backward kernel steps the neurons back in time and forms each neuron's spike gradient
  on the fly from the (at most four) windows that cover it and the winners they kept.

That is 22 bytes per neuron and step instead of 34, with the same results: the forward's
values bit for bit, and in float32 the gradients too (the same window sums in the same order
and the same float32 arithmetic). In half precision (autocast) the membranes are still kept
in float32 here, so the surrogate reads them unrounded; the unfused path keeps them in the
half dtype.

Used by the model's stages where the LIF runs fused, the pooling is max pooling after the
neuron, a gradient is to come and no firing taps are recorded
(:func:`fused_available`) and ``DVSAPP_FUSED_LIF_POOL=1`` is set in the environment at import:
opt-in until a GPU run shows it faster (``benchmarks/speed_gpu.sh``); otherwise the two kernels
run one after the other. Tested against the unfused pair on the CPU through Triton's
interpreter, and compiled for sm_90 (``tests/test_kernels_sm90.py``).
"""

from __future__ import annotations

import os

import torch

from dvsapp.core.model import fused_lif, fused_pool

__all__ = ["fused_available", "lif_max_pool", "load_kernels"]


def _load():
    """The backward kernel, or ``None`` when Triton cannot be imported."""
    global _window_grads  # fused_pool's, which the kernel calls by its global name
    try:
        import triton
        import triton.language as tl
    except Exception:  # no Triton (the CPU wheel of torch)
        return None
    if not fused_pool.load_kernels():
        return None
    _window_grads = fused_pool._window_grads

    @triton.jit
    def lif_pool_backward_kernel(
        gy_ptr, code_ptr, h_ptr, gvt_ptr, gx_ptr, gv0_ptr, steps, n, n_out,
        gain, v_th, alpha,
        C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, OH: tl.constexpr, OW: tl.constexpr,
        CL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # One program: BLOCK neurons of one input row, (b, ih) channels-last or (b, c, ih)
        # contiguous, every step from the last back. A neuron's spike gradient is the sum of
        # the pooled gradients of the windows it won (fused_pool's backward, the same sum in
        # the same order), then the LIF's backward (fused_lif's, float32 membranes).
        r = tl.program_id(0)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inner = W * C if CL else W
        mask = j < inner
        offs = r.to(tl.int64) * inner + j
        gv = tl.load(gvt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for i in range(steps):
            t = steps - 1 - i
            out_base = t.to(tl.int64) * n_out
            gz = _window_grads(gy_ptr + out_base, code_ptr + out_base, r, j, mask, C, H, W, OH, OW, CL, BLOCK)
            h = tl.load(h_ptr + t.to(tl.int64) * n + offs, mask=mask, other=0.0)
            s = tl.sigmoid(2.0 * alpha * (h - v_th))
            gh = gz * (4.0 * s * (1.0 - s)) + tl.where(h >= v_th, 0.0, gv)
            tl.store(gx_ptr + t.to(tl.int64) * n + offs, (gain * gh).to(gx_ptr.dtype.element_ty), mask=mask)
            gv = (1.0 - gain) * gh
        tl.store(gv0_ptr + offs, gv.to(gv0_ptr.dtype.element_ty), mask=mask)

    return lif_pool_backward_kernel


_window_grads = None  # set by _load
# neurons per program: the nine windows' offsets and masks stay in registers across the time
# loop; compiled for sm_90 (Triton 3.9, on the CPU) channels-last, 1024 spilled (255 registers
# a thread and 696 bytes of stack), 256 took 114 registers, 128 takes 64 and spills nothing
_BLOCK = 128
_ENABLED = os.environ.get("DVSAPP_FUSED_LIF_POOL", "0") == "1"  # opt-in until measured on a GPU
_kernel = None


def load_kernels() -> bool:
    """Define this module's kernel and the two it builds on once; ``True`` when all are there.

    Runs at import when CUDA is available; tests with Triton's interpreter
    (``TRITON_INTERPRET=1`` set first) call it themselves.
    """
    global _kernel
    if _kernel is None:
        _kernel = _load()
    return _kernel is not None and fused_lif.load_kernels() and fused_pool.load_kernels()


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``x [T, B, C, H, W]`` in the steps' layout the kernels run (itself or a copy), and
    whether that layout is channels-last."""
    stride = fused_lif._step_strides(x)
    x = fused_lif._as_strided_copy(x, stride)
    return x, fused_pool._channels_last(x.flatten(0, 1))


def _pooled_geometry(shape, channels_last: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shape and strides of the pooled ``[T, B, C, ceil(H/2), ceil(W/2)]`` spikes (and winners),
    each step dense in the given layout."""
    t, b, c, h, w = shape
    oh, ow = fused_pool._pooled_hw(h, w)
    s = (oh * ow * c, 1, ow * c, c) if channels_last else (c * oh * ow, oh * ow, ow, 1)
    return (t, b, c, oh, ow), (b * s[0], *s)


@torch.library.custom_op("dvsapp::lif_max_pool_forward", mutates_args=())
def _forward(
    x: torch.Tensor, v0: torch.Tensor, gain: float, v_leak: float, v_th: float, v_reset: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    lif_fwd, _ = fused_lif._triton()
    pool_fwd, _ = fused_pool._triton()
    x, cl = _layout(x)
    stride = x.stride()
    v0 = fused_lif._as_strided_copy(v0, stride[1:])
    steps, nb, c, hh, ww = x.shape
    n = v0.numel()
    z_dtype, _ = fused_lif._out_dtypes(x, v0)
    h = torch.empty_strided(x.shape, stride, device=x.device, dtype=torch.float32)
    vt = torch.empty_strided(v0.shape, stride[1:], device=v0.device, dtype=v0.dtype)
    y = torch.empty_strided(*_pooled_geometry(x.shape, cl), device=x.device, dtype=z_dtype)
    code = torch.empty_strided(y.shape, y.stride(), device=x.device, dtype=torch.int8)
    if not (n and steps):
        vt.copy_(v0)
        return y, vt, h, code
    # the spikes are not stored (z_ptr unused: h stands in); alpha (the surrogate's steepness)
    # is the backward's
    grid = fused_lif._grid(n)
    lif_fwd[grid](
        x, v0, h, h, vt, n, steps, gain, v_leak, v_th, v_reset, SAVE=True, BLOCK=fused_lif._BLOCK, STORE_Z=False
    )  # fmt: skip
    hf = h.flatten(0, 1)
    oh, ow = y.shape[-2:]
    grid, block = fused_pool._launch(steps * nb * oh if cl else steps * nb * c * oh, ow * c if cl else ow)
    pool_fwd[grid](
        hf, y, code, *hf.stride(), C=c, H=hh, W=ww, OH=oh, OW=ow, CL=cl, BLOCK=block, v_th=v_th, SPIKES=True
    )
    return y, vt, h, code


@_forward.register_fake
def _(x, v0, gain, v_leak, v_th, v_reset, alpha):
    stride = fused_lif._step_strides(x)
    z_dtype, _ = fused_lif._out_dtypes(x, v0)
    h = x.new_empty_strided(x.shape, stride, dtype=torch.float32)
    vt = v0.new_empty_strided(v0.shape, stride[1:])
    y = x.new_empty_strided(
        *_pooled_geometry(x.shape, fused_pool._channels_last(h.flatten(0, 1))), dtype=z_dtype
    )
    return y, vt, h, x.new_empty_strided(y.shape, y.stride(), dtype=torch.int8)


@torch.library.custom_op("dvsapp::lif_max_pool_backward", mutates_args=())
def _backward_op(
    gy: torch.Tensor,
    code: torch.Tensor,
    h: torch.Tensor,
    gvt: torch.Tensor,
    gain: float,
    v_th: float,
    alpha: float,
    x_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    stride = h.stride()
    steps, nb, c, hh, ww = h.shape
    cl = fused_pool._channels_last(h.flatten(0, 1))
    oh, ow = code.shape[-2:]
    # the pooled gradient dense in the layout of the winners' codes (as autograd mostly gives it)
    gy = gy.flatten(0, 1).contiguous(memory_format=fused_pool._format(cl))
    gvt = fused_lif._as_strided_copy(gvt, stride[1:])
    gx = torch.empty_strided(h.shape, stride, device=h.device, dtype=x_dtype)
    gv0 = torch.empty_strided(gvt.shape, stride[1:], device=gvt.device, dtype=gvt.dtype)
    n = gvt.numel()
    if not (n and steps):
        gv0.copy_(gvt)
        return gx, gv0
    grid, block = fused_pool._launch(nb * hh if cl else nb * c * hh, ww * c if cl else ww, _BLOCK)
    _kernel[grid](
        gy, code, h, gvt, gx, gv0, steps, n, code[0].numel(), gain, v_th, alpha,
        C=c, H=hh, W=ww, OH=oh, OW=ow, CL=cl, BLOCK=block,
    )  # fmt: skip
    return gx, gv0


@_backward_op.register_fake
def _(gy, code, h, gvt, gain, v_th, alpha, x_dtype):
    return fused_lif._input_grads_like(h, gvt, x_dtype)


def _setup_context(ctx, inputs, output):
    x, _v0, gain, _v_leak, v_th, _v_reset, alpha = inputs
    ctx.save_for_backward(output[2], output[3])
    ctx.gain, ctx.v_th, ctx.alpha, ctx.x_dtype = gain, v_th, alpha, x.dtype
    ctx.set_materialize_grads(False)  # unused outputs' gradients come as None (see fused_lif)


def _backward(ctx, gy, gvt, _gh, _gcode):
    h, code = ctx.saved_tensors
    if gy is None:
        gy = torch.zeros(code.shape, device=code.device, dtype=torch.float32)
    if gvt is None:
        gvt = torch.zeros_like(h[0])
    gx, gv0 = _backward_op(gy, code, h, gvt, ctx.gain, ctx.v_th, ctx.alpha, ctx.x_dtype)
    return gx, gv0, None, None, None, None, None


_forward.register_autograd(_backward, setup_context=_setup_context)


def fused_available(x: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether :func:`lif_max_pool` runs on input ``x [T, B, C, H, W]`` and membrane ``v``: the
    fused LIF runs there (:func:`fused_lif.fused_available`), the fused pooling is on, a
    gradient is to come (training: without a backward the LIF writes no membranes and the
    pooling needs no winners) and ``DVSAPP_FUSED_LIF_POOL=1`` was set."""
    return (
        _ENABLED
        and _kernel is not None
        and fused_pool._ENABLED
        and x.dim() == 5
        and fused_lif.fused_available(x, v)
        and torch.is_grad_enabled()
        and (x.requires_grad or v.requires_grad)
    )


def lif_max_pool(
    x: torch.Tensor,
    v0: torch.Tensor,
    *,
    gain: float,
    v_leak: float,
    v_th: float,
    v_reset: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF neurons stepped through ``x [T, B, C, H, W]`` from ``v0 [B, C, H, W]``, their spikes
    max-pooled 3x3 / stride 2 / padding 1: ``(pooled spikes [T, B, C, ceil(H/2), ceil(W/2)],
    membrane after the last step)``, as :func:`fused_lif.lif_sequence` then
    :func:`fused_pool.max_pool3x3s2` give them. Differentiable in ``x`` and ``v0``."""
    y, vt, _, _ = _forward(x, v0, float(gain), float(v_leak), float(v_th), float(v_reset), float(alpha))
    return y, vt


if torch.cuda.is_available():
    load_kernels()
