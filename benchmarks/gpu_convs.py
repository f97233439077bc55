"""Each convolution of a preset timed on its own: forward, input gradient, weight gradient.

The training step's convolutions run under cuDNN with the shapes the model gives them
(batch x T images, channels-last, the stem padded where :class:`StemConv` pads it). Which of
them dominates a step, and in which direction, is what this prints; for the first
convolution it also times the forward and weight gradient (its events need no input
gradient) with the 2 input channels zero-padded to 4, 8 and 16 (``StemConv.pad_to``).

    python benchmarks/gpu_convs.py --dtype float32       # on the GPU machine
    python benchmarks/gpu_convs.py --device cpu --preset tiny --batch 2 --iters 1   # smoke

Timings, not tests. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from gpu_speed import _sync, add_cudnn_option, cuda_settings  # this folder (run as a script)
from torch import nn

from dvsapp.core.model import build_model, preset
from dvsapp.core.model.network import StemConv


def _time(fn, device: str, iters: int) -> float:
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def directions(
    x: torch.Tensor, weight: torch.Tensor, mod: nn.Conv2d, iters: int
) -> tuple[float, float, float]:
    """Seconds per call of the convolution of ``x`` by ``weight`` (``mod``'s geometry): forward,
    input gradient, weight gradient (cuDNN's ``convolution_backward``, one direction each)."""
    geometry = (mod.stride, mod.padding, mod.dilation)
    gy = torch.randn_like(F.conv2d(x, weight, None, *geometry, mod.groups))

    def backward(mask):
        return torch.ops.aten.convolution_backward(
            gy, x, weight, None, *geometry, False, [0, 0], mod.groups, mask
        )

    dev = x.device.type
    return (
        _time(lambda: F.conv2d(x, weight, None, *geometry, mod.groups), dev, iters),
        _time(lambda: backward([True, False, False]), dev, iters),
        _time(lambda: backward([False, True, False]), dev, iters),
    )


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def conv_shapes(cfg, batch: int, device: str) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """``(name, module, input shape)`` of every ``nn.Conv2d`` the model runs, in call order."""
    model = build_model(cfg).to(device).to(memory_format=torch.channels_last)
    seen: list[tuple[str, nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, mod, args[0].shape)))
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    x = torch.zeros(cfg.timesteps, batch, cfg.in_channels, *cfg.input_hw, device=device)
    with torch.no_grad():
        model(x, model.initial_state(batch, device, torch.float32))
    for h in hooks:
        h.remove()
    return seen


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sdt-2-256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16, help="samples; the convolutions see batch x T images")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--stem-pads", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4, 8, 16])
    ap.add_argument(
        "--contiguous", action="store_true", help="also time each convolution in NCHW (contiguous)"
    )
    add_cudnn_option(ap)
    args = ap.parse_args(argv)
    cuda_settings(args.cudnn_limit)
    dt = getattr(torch, args.dtype)
    cfg = preset(args.preset)
    dev = args.device
    rows = [
        "| conv | input | weight | forward ms | input grad ms | weight grad ms |",
        "|---|---|---|---|---|---|",
    ]
    total = 0.0
    for name, mod, shape in conv_shapes(cfg, args.batch, dev):
        weight = mod.weight.detach().to(dt)
        x_shape = list(shape)
        half = dt != torch.float32  # the model pads the stem in half precision only
        if (
            isinstance(mod, StemConv)
            and dev.startswith("cuda")
            and half
            and mod.in_channels % StemConv.pad_to
        ):
            pad = (-mod.in_channels) % StemConv.pad_to
            x_shape[1] += pad
            weight = F.pad(weight, (0, 0, 0, 0, 0, pad))
        spikes = (torch.rand(x_shape, device=dev) < 0.1).to(dt)
        f, di, dw = directions(_cl(spikes), _cl(weight), mod, args.iters)
        total += f + di + dw
        rows.append(
            f"| {name} | {tuple(x_shape)} | {tuple(weight.shape)} | {1e3 * f:.3f} | {1e3 * di:.3f} | {1e3 * dw:.3f} |"
        )
        if args.contiguous:
            fc, dic, dwc = directions(spikes.contiguous(), weight.contiguous(), mod, args.iters)
            rows.append(f"| {name}, NCHW | | | {1e3 * fc:.3f} | {1e3 * dic:.3f} | {1e3 * dwc:.3f} |")
        if isinstance(mod, StemConv):  # its events need no input gradient
            for pad_to in args.stem_pads:
                widen = (0, 0, 0, 0, 0, (-mod.in_channels) % pad_to)
                xq = _cl(F.pad(spikes[:, : mod.in_channels], widen))
                fq, _, wgq = directions(xq, _cl(F.pad(mod.weight.detach().to(dt), widen)), mod, args.iters)
                rows.append(
                    f"| {name}, channels padded to {xq.shape[1]} | | | {1e3 * fq:.3f} | | {1e3 * wgq:.3f} |"
                )
    rows.append(f"| all, one pass each | | | | | {1e3 * total:.3f} (sum) |")
    head = (
        f"{args.preset}, batch {args.batch} x T {cfg.timesteps}, {args.dtype}, channels-last, TF32 allowed, "
        + f"cuDNN benchmark limit {torch.backends.cudnn.benchmark_limit}; "
        + (torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu")
    )
    print(head + "\n\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
