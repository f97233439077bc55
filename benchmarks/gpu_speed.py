"""Training and inference throughput of the 256-token ``sdt-2-256`` network on one GPU.

The cases the Spike-driven Transformer's reference implementation was measured in
(BICLab code, spikingjelly's CuPy neuron, its fp16 AMP; figures in docs/model.md):

- training: batch 16, T = 16, forward + backward + AdamW step, samples per second;
- inference: batch 32, T = 16, sample-timesteps per second; batch 1, timesteps per second.

Each case runs eager and under ``torch.compile`` (one graph: the state is passed
explicitly), in bf16 autocast and in fp32. Inputs are random event counts at the
density of real DVS Gesture frames (about 5% of pixels active).

    python benchmarks/gpu_speed.py --out speed.md        # on the GPU machine
    python benchmarks/gpu_speed.py --device cpu --preset tiny --iters 2 --cases train-eager   # smoke
    DVSAPP_FUSED_POOL=0 python benchmarks/gpu_speed.py ...   # with Inductor's max pooling instead of the fused one

Timings, not tests. Prints a Markdown table (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import NamedTuple

import torch
import torch._inductor.config
import torch.nn.functional as F

from dvsapp.core.model import build_model, conv_wgrad, fused_lif, fused_lif_pool, fused_pool, preset
from dvsapp.core.model.network import StemConv

LAYOUT = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def _frames(t, b, cfg, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.rand(t, b, cfg.in_channels, *cfg.input_hw, generator=g) < 0.05).to(dtype) * 2
    return x.to(device)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device, bf16):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def _profile(fn, n, device):
    """Top kernels of ``n`` calls of ``fn`` (torch.profiler) and the share of wall time the GPU was busy."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    _sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts, record_shapes=True) as prof:
        for _ in range(n):
            fn()
        _sync(device)
    wall = time.perf_counter() - t0
    ev = prof.key_averages()
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    busy = sum(getattr(e, key, 0.0) for e in ev if e.device_type.name in ("CUDA", "PrivateUse1")) / 1e6
    table = ev.table(sort_by=key, row_limit=30, max_name_column_width=90)
    head = f"{n} calls: wall {1e3 * wall / n:.2f} ms, GPU kernels {1e3 * busy / n:.2f} ms per call"
    # the copies outside the compiled graph (layout changes around custom ops and cuDNN), by shape
    copies = sorted(
        (e for e in prof.key_averages(group_by_input_shape=True) if e.key in ("aten::copy_", "aten::clone")),
        key=lambda e: -e.device_time_total,
    )
    lines = [
        f"{e.key} {e.input_shapes} x{e.count // n}/call: {e.device_time_total / 1e3 / n:.3f} ms per call"
        for e in copies[:12]
    ]
    return (
        head
        + "\n"
        + table
        + "\n\nGPU time by kind of kernel:\n"
        + _by_kind(ev, n)
        + "\n\ncopies by shape:\n"
        + "\n".join(lines)
    )


_KINDS = (
    ("LIF (fused)", ("lif_",)),
    ("pooling (fused)", ("pool_forward", "pool_backward")),
    ("convolution / GEMM (cuDNN, cuBLAS)", ("xmma", "cudnn", "cutlass", "gemm", "sm90_", "sm80_", "conv")),
    ("Inductor pointwise", ("triton_poi",)),
    ("Inductor reduction", ("triton_red", "triton_per")),
    ("optimizer (foreach)", ("multi_tensor", "foreach")),
    ("copies / aten elementwise", ("copy", "elementwise", "fill")),
)


def _by_kind(ev, n):
    """Self GPU time per call, summed by kind of kernel (names matched in order), each with its count."""
    sums: dict[str, list] = {}
    for e in ev:
        if e.device_type.name not in ("CUDA", "PrivateUse1"):
            continue
        name = e.key.lower()
        kind = next((k for k, pats in _KINDS if any(p in name for p in pats)), "other")
        acc = sums.setdefault(kind, [0.0, 0])
        acc[0] += e.self_device_time_total
        acc[1] += e.count
    rows = sorted(sums.items(), key=lambda kv: -kv[1][0])
    return "\n".join(f"{k}: {t / 1e3 / n:.2f} ms, {c // n} kernels per call" for k, (t, c) in rows)


def add_cudnn_option(ap: argparse.ArgumentParser) -> None:
    """``--cudnn-limit``: how many cuDNN algorithms ``benchmark`` mode tries."""
    ap.add_argument(
        "--cudnn-limit",
        type=int,
        default=None,
        help="torch.backends.cudnn.benchmark_limit (0: try every algorithm)",
    )


def cuda_settings(cudnn_limit: int | None = None) -> None:
    """What every GPU benchmark here runs with: cuDNN's benchmark mode (its algorithm limit
    set when given) and TF32 allowed in convolutions and matrix products."""
    torch.backends.cudnn.benchmark = True
    if cudnn_limit is not None:
        torch.backends.cudnn.benchmark_limit = cudnn_limit
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


class Case(NamedTuple):
    kind: str  # "train" or "infer"
    batch: int
    compiled: bool
    bf16: bool  # bf16 autocast
    mode: str | None = None  # torch.compile mode
    state_dtype: torch.dtype = torch.float32  # dtype of the carried state


CASES = {
    "train-eager-bf16": Case("train", 16, False, True),
    "train-compiled-bf16": Case("train", 16, True, True),
    "train-compiled-fp32": Case("train", 16, True, False),
    "train-compiled-bf16-bf16state": Case("train", 16, True, True, state_dtype=torch.bfloat16),
    "infer-eager-bf16-b32": Case("infer", 32, False, True),
    "infer-compiled-bf16-b32": Case("infer", 32, True, True),
    "infer-compiled-fp32-b32": Case("infer", 32, True, False),
    "infer-eager-fp32-b1": Case("infer", 1, False, False),
    "infer-compiled-fp32-b1": Case("infer", 1, True, False, mode="reduce-overhead"),
}


def _measure(fn, *, warmup, iters, profile, device):
    """``fn`` run ``warmup`` times (compiles), then timed over ``iters`` calls, then profiled
    over ``profile`` calls: ``(seconds per call, warm-up seconds, profile text or None)``."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    dt = (time.perf_counter() - t0) / iters
    return dt, warmup_s, (_profile(fn, profile, device) if profile else None)


def _model(cfg, device, case, layout):
    model = build_model(cfg).to(device).to(memory_format=layout)
    return model, (torch.compile(model, mode=case.mode) if case.compiled else model)


def bench_train(cfg, device, case, *, iters, warmup, profile=0, layout=torch.channels_last):
    """Training steps (forward, backward, AdamW) from rest: ``(samples/s, ms per step, ...)``."""
    model, net = _model(cfg, device, case, layout)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.startswith("cuda") or None)
    graphs = case.mode == "reduce-overhead"
    x = _frames(cfg.timesteps, case.batch, cfg, device)
    y = torch.randint(0, cfg.num_classes, (cfg.timesteps * case.batch,), device=device)

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        state = model.initial_state(case.batch, device, case.state_dtype)
        opt.zero_grad(set_to_none=True)
        with _autocast(device, case.bf16):
            logits, _ = net(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y)
        loss.backward()
        opt.step()

    dt, warmup_s, prof = _measure(step, warmup=warmup, iters=iters, profile=profile, device=device)
    return f"{case.batch / dt:.0f} samples/s", dt, warmup_s, prof


def bench_infer(cfg, device, case, *, iters, warmup, profile=0, layout=torch.channels_last):
    """Consecutive windows with the state carried: ``(sample-timesteps/s, ms per window, ...)``."""
    model, net = _model(cfg, device, case, layout)
    model.eval()
    x = _frames(cfg.timesteps, case.batch, cfg, device)
    graphs = case.mode == "reduce-overhead"  # CUDA graphs: the carried state must outlive the next replay
    box = [model.initial_state(case.batch, device, case.state_dtype)]

    def window():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        _, state = net(x, box[0])
        sd = case.state_dtype
        box[0] = state.map(lambda t: t.to(sd).clone()) if graphs else state.to(dtype=sd)

    with torch.inference_mode(), _autocast(device, case.bf16):
        dt, warmup_s, prof = _measure(window, warmup=warmup, iters=iters, profile=profile, device=device)
    unit = "timesteps/s" if case.batch == 1 else "sample-timesteps/s"
    return f"{case.batch * cfg.timesteps / dt:.0f} {unit}", dt, warmup_s, prof


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sdt-2-256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=None)
    ap.add_argument("--profile", type=int, default=0, help="profile this many calls per case (top kernels)")
    ap.add_argument(
        "--layout",
        choices=sorted(LAYOUT),
        default="channels_last",
        help="the weights' layout (training's: channels_last)",
    )
    ap.add_argument(
        "--no-stem-pad",
        action="store_true",
        help="run the first convolution on its 2 channels unpadded (float32 always is)",
    )
    ap.add_argument(
        "--stem-pad-to",
        type=int,
        default=StemConv.pad_to,
        help="pad the first convolution's channels to a multiple of this",
    )
    ap.add_argument(
        "--freeze",
        action="store_true",
        help="inference compiles with Inductor's freezing (weights as constants, BN folded into the convolutions)",
    )
    add_cudnn_option(ap)
    args = ap.parse_args(argv)
    cuda_settings(args.cudnn_limit)
    StemConv.pad_to = 1 if args.no_stem_pad else args.stem_pad_to
    torch._inductor.config.freezing = args.freeze  # applies to graphs compiled without grad only
    cfg = preset(args.preset)
    lines = [
        f"{args.preset}: {cfg.n_tokens} tokens, T={cfg.timesteps}, D={cfg.embed_dim}, depth {cfg.depth}; "
        f"fused LIF {'on' if args.device.startswith('cuda') and fused_lif.load_kernels() else 'off'}; "
        f"{args.layout}; stem {f'padded to a multiple of {StemConv.pad_to} channels in bf16' if StemConv.pad_to > 1 else 'unpadded'}; "
        f"inference {'frozen' if args.freeze else 'not frozen'}; cuDNN benchmark limit {torch.backends.cudnn.benchmark_limit}; "
        f"max pooling {'fused' if fused_pool._ENABLED else 'nn.MaxPool2d (DVSAPP_FUSED_POOL=0)'}; "
        f"LIF + max pooling in one pass {'on (DVSAPP_FUSED_LIF_POOL=1)' if fused_lif_pool._ENABLED else 'off'}; "
        f"3x3 weight gradients {'Triton (DVSAPP_TRITON_WGRAD=1)' if conv_wgrad._ENABLED else 'cuDNN'}; "
        f"device {torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}, torch {torch.__version__}",
        "",
        "| case | batch | figure | ms per step/window | warm-up (incl. compile) s |",
        "|---|---|---|---|---|",
    ]
    profiles = []
    for name in args.cases.split(","):
        case = CASES[name]
        bench = bench_train if case.kind == "train" else bench_infer
        try:
            fig, dt, warmup_s, prof = bench(
                cfg,
                args.device,
                case,
                iters=args.iters,
                warmup=args.warmup,
                profile=args.profile,
                layout=LAYOUT[args.layout],
            )
            lines.append(f"| {name} | {case.batch} | {fig} | {1e3 * dt:.2f} | {warmup_s:.1f} |")
            if prof:
                profiles.append(f"## {name}\n\n```\n{prof}\n```\n")
        except Exception as exc:  # a case that fails (e.g. a compile error) is reported, the rest still run
            lines.append(
                f"| {name} | {case.batch} | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | |"
            )
        print(lines[-1], flush=True)
        torch._dynamo.reset()
    text = "\n".join(lines) + ("\n\n" + "\n".join(profiles) if profiles else "")
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
