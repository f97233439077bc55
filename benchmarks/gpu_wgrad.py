"""An experiment: the 3x3 convolutions' weight gradient as one Triton kernel, against cuDNN's.

In fp32 (TF32) training of ``sdt-2-256`` the largest single kernel is cuDNN's weight gradient
of stage 1 (32 -> 64 channels at 128 x 128, batch 16 x T 16): 2.9 ms on an H100, where its
forward, the same number of multiply-adds, takes 0.8 ms (``gpu_convs.py``). A weight gradient
is a sum over every output pixel of ``gy[p] (outer) x[p + tap]``: an implicit matrix product
with a short output (``C_out x C_in`` per tap) and a long reduction (4.2 M pixels). Here each
program reduces one chunk of pixels for all nine taps at once (the gradient tile is read
once and multiplied with the nine shifted input tiles, in TF32 on the tensor cores), writes
its partial sums, and one ``sum`` adds the chunks.

This script only measures; the model does not use the kernel. It prints, per 3x3
convolution of the preset, cuDNN's and the kernel's time and their largest difference
relative to the gradient's largest element.

    python benchmarks/gpu_wgrad.py                  # on the GPU machine
    TRITON_INTERPRET=1 python benchmarks/gpu_wgrad.py --device cpu --check-only   # correctness, small shapes
"""

from __future__ import annotations

import argparse
import time

import torch
import triton
import triton.language as tl


@triton.jit
def _tap(
    gt,
    x_ptr,
    p,
    pm,
    h,
    w,
    c,
    DY: tl.constexpr,
    DX: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    CI: tl.constexpr,
):
    # gt [BO, BP] times the input tile shifted by (DY, DX) [BP, BC]; zero outside the image
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
    # x [P, CI] and gy [P, CO]: channels-last pixels (n, h, w) in order; part [chunks, 9, CO, CI]
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
        a0 += _tap(gt, x_ptr, p, pm, h, w, c, -1, -1, H, W, CI)
        a1 += _tap(gt, x_ptr, p, pm, h, w, c, -1, 0, H, W, CI)
        a2 += _tap(gt, x_ptr, p, pm, h, w, c, -1, 1, H, W, CI)
        a3 += _tap(gt, x_ptr, p, pm, h, w, c, 0, -1, H, W, CI)
        a4 += _tap(gt, x_ptr, p, pm, h, w, c, 0, 0, H, W, CI)
        a5 += _tap(gt, x_ptr, p, pm, h, w, c, 0, 1, H, W, CI)
        a6 += _tap(gt, x_ptr, p, pm, h, w, c, 1, -1, H, W, CI)
        a7 += _tap(gt, x_ptr, p, pm, h, w, c, 1, 0, H, W, CI)
        a8 += _tap(gt, x_ptr, p, pm, h, w, c, 1, 1, H, W, CI)
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


def weight_grad(x, gy, *, bo=64, bc=32, bp=128, programs=528, num_warps=8):
    """The weight gradient ``[CO, CI, 3, 3]`` of a 3x3 / stride 1 / padding 1 convolution of
    ``x [N, CI, H, W]`` with output gradient ``gy [N, CO, H, W]`` (both channels-last)."""
    n, ci, hh, ww = x.shape
    co = gy.shape[1]
    bo, bc = min(bo, co), min(bc, ci)
    xf = x.permute(0, 2, 3, 1).contiguous()  # a view when x is channels-last
    gf = gy.permute(0, 2, 3, 1).contiguous()
    pixels = n * hh * ww
    tiles = (co // bo) * (ci // bc)
    chunks = max(1, min(programs // tiles, triton.cdiv(pixels, bp)))
    chunk = triton.cdiv(triton.cdiv(pixels, chunks), bp) * bp
    chunks = triton.cdiv(pixels, chunk)
    part = torch.empty(chunks, 9, co, ci, device=x.device, dtype=torch.float32)
    extra = {} if x.device.type == "cpu" else {"num_warps": num_warps}
    wgrad_kernel[(chunks, co // bo, ci // bc)](
        xf, gf, part, pixels, chunk, H=hh, W=ww, CI=ci, CO=co, BO=bo, BC=bc, BP=bp, **extra
    )
    return part.sum(0).permute(1, 2, 0).reshape(co, ci, 3, 3)


def cudnn_weight_grad(x, gy, weight):
    return torch.ops.aten.convolution_backward(
        gy, x, weight, None, (1, 1), (1, 1), (1, 1), False, [0, 0], 1, [False, True, False]
    )[1]


def _time(fn, device, iters):
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / max(iters, 1)


# (name, N, CI, CO, H, W) of sdt-2-256's 3x3 convolutions with spike inputs, batch 16 x T 16
SHAPES = [
    ("stage 1", 256, 32, 64, 128, 128),
    ("stage 2", 256, 64, 128, 64, 64),
    ("stage 3", 256, 128, 256, 32, 32),
    ("relative position", 256, 256, 256, 16, 16),
]
CHECK = [("check", 3, 16, 32, 9, 7), ("check", 2, 32, 64, 8, 8)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--check-only", action="store_true", help="small shapes, correctness only")
    args = ap.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    dev = args.device
    configs = (
        [dict(bp=bp, num_warps=nw) for bp in (64, 128) for nw in (4, 8)] if dev.startswith("cuda") else [{}]
    )
    print("| conv | input | cuDNN ms | Triton ms (best config) | config | max diff / max |")
    print("|---|---|---|---|---|---|")
    for name, n, ci, co, hh, ww in CHECK if args.check_only else SHAPES:
        g = torch.Generator().manual_seed(ci)
        cl = torch.channels_last
        x = (torch.rand(n, ci, hh, ww, generator=g) < 0.15).float().to(dev).contiguous(memory_format=cl)
        gy = torch.randn(n, co, hh, ww, generator=g).to(dev).contiguous(memory_format=cl)
        weight = torch.randn(co, ci, 3, 3, generator=g).to(dev).contiguous(memory_format=cl)
        ref = cudnn_weight_grad(x, gy, weight)
        scale = float(ref.abs().max())
        t_ref = _time(
            lambda x=x, gy=gy, w=weight: cudnn_weight_grad(x, gy, w),
            dev,
            0 if args.check_only else args.iters,
        )
        best = None
        for cfg in configs:
            got = weight_grad(x, gy, **cfg)
            diff = float((got - ref).abs().max()) / scale
            t = _time(
                lambda cfg=cfg, x=x, gy=gy: weight_grad(x, gy, **cfg),
                dev,
                0 if args.check_only else args.iters,
            )
            if best is None or t < best[0]:
                best = (t, cfg, diff)
        t, cfg, diff = best
        print(
            f"| {name} | {n} x {ci} x {hh} x {ww} -> {co} | {1e3 * t_ref:.3f} | {1e3 * t:.3f} | {cfg} | {diff:.1e} |"
        )
        if args.check_only:
            assert diff < 1e-5, diff


if __name__ == "__main__":
    main()
