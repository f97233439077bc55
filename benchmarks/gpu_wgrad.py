"""An experiment: the 3x3 convolutions' weight gradient as one Triton kernel, against cuDNN's.

In fp32 (TF32) training of ``sdt-2-256`` the largest single kernel is cuDNN's weight gradient
of stage 1 (32 -> 64 channels at 128 x 128, batch 16 x T 16): 2.9 ms on an H100, where its
forward, the same number of multiply-adds, takes 0.8 ms (``gpu_convs.py``). A weight gradient
is a sum over every output pixel of ``gy[p] (outer) x[p + tap]``: an implicit matrix product
with a short output (``C_out x C_in`` per tap) and a long reduction (4.2 M pixels). Here each
program reduces one chunk of pixels for all nine taps at once (the gradient tile is read
once and multiplied with the nine shifted input tiles, in TF32 on the tensor cores), writes
its partial sums, and one ``sum`` adds the chunks (``core/model/conv_wgrad.py``; the model
uses it only with ``DVSAPP_TRITON_WGRAD=1``).

This script only measures. It prints, per 3x3 convolution of the preset, cuDNN's and the
kernel's time and their largest difference relative to the gradient's largest element.

    python benchmarks/gpu_wgrad.py                  # on the GPU machine
    TRITON_INTERPRET=1 python benchmarks/gpu_wgrad.py --device cpu --check-only   # correctness, small shapes
"""

from __future__ import annotations

import argparse

import torch
from gpu_convs import _time  # this folder (run as a script)
from gpu_speed import cuda_settings

from dvsapp.core.model import conv_wgrad


def cudnn_weight_grad(x, gy, weight):
    return torch.ops.aten.convolution_backward(
        gy, x, weight, None, (1, 1), (1, 1), (1, 1), False, [0, 0], 1, [False, True, False]
    )[1]


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
    assert conv_wgrad.load_kernels(), "no Triton"
    cuda_settings()
    dev = args.device
    configs = (
        # 128 pixels with 8 warps spills on sm_90 (conv_wgrad.py), 4 warps spill at 64 and 128
        [dict(pixels_per_step=bp) for bp in (32, 64, 128)] if dev.startswith("cuda") else [{}]
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
            1 if args.check_only else args.iters,
        )
        best = None
        for cfg in configs:
            got = conv_wgrad.weight_grad(x, gy, **cfg)
            diff = float((got - ref).abs().max()) / scale
            t = _time(
                lambda cfg=cfg, x=x, gy=gy: conv_wgrad.weight_grad(x, gy, **cfg),
                dev,
                1 if args.check_only else args.iters,
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
