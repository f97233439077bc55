"""All timesteps of one LIF layer in one GPU kernel (Triton), forward and backward.

:class:`~dvsapp.core.model.layers.LIFLayer` steps its neurons with the Norse cell, one
call per timestep: a handful of elementwise kernels per step and, when training,
autograd's record of every one of them.  On CUDA (with Triton) the layer runs
:func:`lif_sequence` instead: one kernel reads the input currents of all ``T`` steps
and writes the spikes, keeping each neuron's membrane in a register; the backward is
one kernel that runs the same recurrence in reverse.  The arithmetic is the cell's
(:func:`dvsapp.core.model.neurons.sdt_lif_step`):

    h[t] = v[t-1] + g * (x[t] + v_leak - v[t-1])       (g = dt * tau_mem_inv)
    z[t] = h[t] >= v_th
    v[t] = v_reset if z[t] else h[t]                    (hard reset, spike detached)

and the gradient is the Norse ``tanh`` surrogate's, through the detached reset:

    dz/dh   = 1 - tanh(alpha * (h - v_th))**2
    dL/dh_t = dL/dz_t * dz/dh + dL/dv_t * (1 - z_t)
    dL/dx_t = g * dL/dh_t,   dL/dv_{t-1} = (1 - g) * dL/dh_t

Under autocast (a bfloat16 or float16 input) the spikes come out in that dtype, and the
membranes kept for the backward too: half the bytes on the largest tensors of training.
Forward spikes and membranes equal the cell's bit for bit when ``g`` is a power of two
(the shipped ``g = 0.5``: the product is exact, so a fused multiply-add rounds as the
cell's separate multiply and add); the surrogate is evaluated as ``4 s (1 - s)`` with
``s = sigmoid(2 alpha u)``, equal to ``1 - tanh(alpha u)**2`` to float32 rounding.
Tested against the cell on CUDA and, with ``TRITON_INTERPRET=1``, on the CPU.

The two kernels are ``torch.library`` custom ops, so ``torch.compile`` keeps them as
single calls in its graph.  ``DVSAPP_FUSED_LIF=0`` turns the path off.
"""

from __future__ import annotations

import os

import torch

__all__ = ["fused_available", "lif_sequence", "load_kernels"]


def _load():
    """The two Triton kernels, or ``None`` when Triton cannot be imported."""
    try:
        import triton
        import triton.language as tl
    except Exception:  # no Triton (the CPU wheel of torch): the Norse cell runs instead
        return None

    @triton.jit
    def lif_forward_kernel(
        x_ptr, v0_ptr, z_ptr, h_ptr, vt_ptr, n, steps,
        gain, v_leak, v_th, v_reset,
        SAVE: tl.constexpr, BLOCK: tl.constexpr, STORE_Z: tl.constexpr,
    ):  # fmt: skip
        # STORE_Z False: the spikes are not written (fused_lif_pool's max pooling reads them
        # from the kept membranes instead)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for t in range(steps):
            x = tl.load(x_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            h = v + gain * (x + v_leak - v)
            spike = h >= v_th
            if STORE_Z:
                tl.store(
                    z_ptr + t * n + offs, tl.where(spike, 1.0, 0.0).to(z_ptr.dtype.element_ty), mask=mask
                )
            if SAVE:
                tl.store(h_ptr + t * n + offs, h.to(h_ptr.dtype.element_ty), mask=mask)
            v = tl.where(spike, v_reset, h)
        tl.store(vt_ptr + offs, v.to(vt_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def lif_backward_kernel(
        gz_ptr, h_ptr, z_ptr, gvt_ptr, gx_ptr, gv0_ptr, n, steps,
        gain, v_th, alpha,
        EXACT_H: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # EXACT_H: the kept membranes are float32, the forward's own, so whether a neuron
        # fired is h >= v_th again and the spikes need not be read (a quarter of the bytes)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        gv = tl.load(gvt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for i in range(steps):
            t = steps - 1 - i
            h = tl.load(h_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            gz = tl.load(gz_ptr + t * n + offs, mask=mask, other=0.0).to(tl.float32)
            if EXACT_H:
                fired = h >= v_th
            else:
                fired = tl.load(z_ptr + t * n + offs, mask=mask, other=0.0) != 0
            s = tl.sigmoid(2.0 * alpha * (h - v_th))
            gh = gz * (4.0 * s * (1.0 - s)) + tl.where(fired, 0.0, gv)
            tl.store(gx_ptr + t * n + offs, (gain * gh).to(gx_ptr.dtype.element_ty), mask=mask)
            gv = (1.0 - gain) * gh
        tl.store(gv0_ptr + offs, gv.to(gv0_ptr.dtype.element_ty), mask=mask)

    return lif_forward_kernel, lif_backward_kernel


_BLOCK = 1024
_ENABLED = os.environ.get("DVSAPP_FUSED_LIF", "1") != "0"
_kernels = None  # (forward, backward) once loaded


def load_kernels() -> bool:
    """Define the kernels (imports Triton) once; ``True`` when they are there to run.

    Runs at import when CUDA is available; tests with Triton's interpreter
    (``TRITON_INTERPRET=1`` set first) call it themselves.  ``False`` without Triton or
    with ``DVSAPP_FUSED_LIF=0``.
    """
    global _kernels
    if _kernels is None and _ENABLED:
        _kernels = _load()
    return _kernels is not None


def _triton():
    if _kernels is None:
        raise RuntimeError("the fused LIF kernels are not loaded (no Triton, or DVSAPP_FUSED_LIF=0)")
    return _kernels


def _grid(n: int) -> tuple[int]:
    return ((n + _BLOCK - 1) // _BLOCK,)


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= max(int(size), 1)
    return tuple(reversed(strides))


def _step_strides(x: torch.Tensor) -> tuple[int, ...]:
    """The layout the kernels run ``x [T, *S]`` in: its own, or contiguous.

    The kernels address element ``i`` of step ``t`` as ``t * n + i`` in every tensor, so any
    layout works whose steps are dense blocks of ``n`` elements in the same order: plain
    contiguous, or channels-last steps (``[T, B, C, H, W]`` with ``C`` innermost, what
    cuDNN's convolutions produce and want).  Spikes, kept membranes and gradients are
    allocated in that layout, so no copy goes in or out; any other layout is copied to
    contiguous first.
    """
    stride = tuple(x.stride())
    n = x[0].numel() if x.dim() and x.shape[0] else 0
    if n and (
        x.is_contiguous()
        or (x.dim() == 5 and stride[0] == n and x[0].is_contiguous(memory_format=torch.channels_last))
    ):
        return stride
    return _contiguous_strides(x.shape)


def _as_strided_copy(t: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """``t`` itself when it is laid out as ``stride`` says (size-1 dimensions aside), else a copy so laid out."""
    if all(a == b for a, b, size in zip(t.stride(), stride, t.shape, strict=True) if size > 1):
        return t
    out = torch.empty_strided(t.shape, stride, device=t.device, dtype=t.dtype)
    out.copy_(t)
    return out


@torch.library.custom_op("dvsapp::lif_forward", mutates_args=())
def _lif_forward(
    x: torch.Tensor,
    v0: torch.Tensor,
    gain: float,
    v_leak: float,
    v_th: float,
    v_reset: float,
    alpha: float,
    save: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # alpha (the surrogate's steepness) is used by the backward only
    fwd, _ = _triton()
    stride = _step_strides(x)
    x = _as_strided_copy(x, stride)
    v0 = _as_strided_copy(v0, stride[1:])
    steps, n = x.shape[0], v0.numel()
    z_dtype, h_dtype = _out_dtypes(x, v0)
    z = torch.empty_strided(x.shape, stride, device=x.device, dtype=z_dtype)
    h = (
        torch.empty_strided(x.shape, stride, device=x.device, dtype=h_dtype)
        if save
        else x.new_empty((0,), dtype=h_dtype)
    )
    vt = torch.empty_strided(v0.shape, stride[1:], device=v0.device, dtype=v0.dtype)
    if n and steps:
        fwd[_grid(n)](
            x, v0, z, h, vt, n, steps, gain, v_leak, v_th, v_reset, SAVE=save, BLOCK=_BLOCK, STORE_Z=True
        )
    else:
        vt.copy_(v0)
    return z, vt, h


@_lif_forward.register_fake
def _(x, v0, gain, v_leak, v_th, v_reset, alpha, save):
    stride = _step_strides(x)
    z_dtype, h_dtype = _out_dtypes(x, v0)
    z = x.new_empty_strided(x.shape, stride, dtype=z_dtype)
    h = x.new_empty_strided(x.shape, stride, dtype=h_dtype) if save else x.new_empty((0,), dtype=h_dtype)
    return z, v0.new_empty_strided(v0.shape, stride[1:]), h


@torch.library.custom_op("dvsapp::lif_backward", mutates_args=())
def _lif_backward(
    gz: torch.Tensor,
    h: torch.Tensor,
    z: torch.Tensor,
    gvt: torch.Tensor,
    gain: float,
    v_th: float,
    alpha: float,
    x_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    _, bwd = _triton()
    stride = h.stride()  # the forward's layout (h and z share it)
    gz = _as_strided_copy(gz, stride)
    gvt = _as_strided_copy(gvt, stride[1:])
    steps, n = h.shape[0], gvt.numel()
    gx = torch.empty_strided(h.shape, stride, device=h.device, dtype=x_dtype)
    gv0 = torch.empty_strided(gvt.shape, stride[1:], device=gvt.device, dtype=gvt.dtype)
    if n and steps:
        exact_h = h.dtype == torch.float32
        bwd[_grid(n)](gz, h, z, gvt, gx, gv0, n, steps, gain, v_th, alpha, EXACT_H=exact_h, BLOCK=_BLOCK)
    else:
        gv0.copy_(gvt)
    return gx, gv0


def _input_grads_like(
    h: torch.Tensor, gvt: torch.Tensor, x_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty input and initial-membrane gradients in the kept membranes' layout (fake kernels)."""
    stride = h.stride()
    return h.new_empty_strided(h.shape, stride, dtype=x_dtype), gvt.new_empty_strided(gvt.shape, stride[1:])


@_lif_backward.register_fake
def _(gz, h, z, gvt, gain, v_th, alpha, x_dtype):
    return _input_grads_like(h, gvt, x_dtype)


def _setup_context(ctx, inputs, output):
    x, v0, gain, _v_leak, v_th, _v_reset, alpha, _save = inputs
    ctx.save_for_backward(output[2], output[0])
    ctx.gain, ctx.v_th, ctx.alpha, ctx.x_dtype = gain, v_th, alpha, x.dtype
    # an unused output's gradient comes as None, not as contiguous zeros that the backward
    # would copy into the steps' layout (the last membrane's, whenever a clip starts from rest
    # and its final state is dropped)
    ctx.set_materialize_grads(False)


def _backward(ctx, gz, gvt, _gh):
    h, z = ctx.saved_tensors
    if gz is None:
        gz = torch.zeros_like(z)
    if gvt is None:
        gvt = torch.zeros_like(h[0], dtype=torch.float32)  # in the steps' layout: no copy in the op
    gx, gv0 = _lif_backward(gz, h, z, gvt, ctx.gain, ctx.v_th, ctx.alpha, ctx.x_dtype)
    return gx, gv0, None, None, None, None, None, None


_lif_forward.register_autograd(_backward, setup_context=_setup_context)


_X_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_HALF = (torch.bfloat16, torch.float16)


def _out_dtypes(x: torch.Tensor, v0: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """Dtypes of the spikes and of the membranes kept for the backward.

    A float32 input gets the cell's: spikes in the promoted dtype, membranes in float32.
    A half-precision input (autocast) gets both in its own dtype: 0 and 1 are exact in
    any float dtype and the next convolution casts to it anyway, so the spikes are
    written and read at half the bytes; the kept membrane only feeds the surrogate
    (the reset in the backward is read from the spikes, so it is the forward's exactly;
    with float32 membranes the backward tests ``h >= v_th`` again instead, as exact and a
    quarter fewer bytes to read).
    """
    if x.dtype in _HALF:
        return x.dtype, x.dtype
    return torch.result_type(x, v0), torch.float32


def fused_available(x: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether :func:`lif_sequence` can run on input ``x`` and membrane ``v``.

    It can for CUDA tensors with Triton importable, ``x`` in float32 / bfloat16 / float16 and
    the membrane in float32 (the kernel computes in float32, as the cell does for these
    dtypes; other dtypes, e.g. float64, run the cell).

    ``DVSAPP_FUSED_LIF=0`` in the environment (read at import) turns the fused path off.
    (:func:`lif_sequence` itself also runs on CPU tensors under Triton's interpreter.)
    """
    return _kernels is not None and x.is_cuda and x.dtype in _X_DTYPES and v.dtype == torch.float32


def lif_sequence(
    x: torch.Tensor,
    v0: torch.Tensor,
    *,
    gain: float,
    v_leak: float,
    v_th: float,
    v_reset: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step LIF neurons through ``x [T, *shape]`` from membrane ``v0 [*shape]`` in one kernel.

    Returns the spikes ``[T, *shape]`` (0/1: for a float32 ``x`` in the promoted dtype of
    ``x`` and ``v0``, as the Norse cell gives them; for a half-precision ``x`` in its dtype)
    and the membrane after the last step (``v0``'s dtype).  Differentiable in ``x`` and
    ``v0`` when gradients are on (the membranes before each reset are kept for the
    backward, in float32 or in ``x``'s half precision: :func:`_out_dtypes`).
    """
    save = torch.is_grad_enabled() and (x.requires_grad or v0.requires_grad)
    z, vt, _ = _lif_forward(
        x, v0, float(gain), float(v_leak), float(v_th), float(v_reset), float(alpha), save
    )
    return z, vt


if torch.cuda.is_available():
    load_kernels()
