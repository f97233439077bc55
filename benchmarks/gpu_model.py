"""GPU throughput of the spiking transformer: eager vs ``torch.compile``, batch 1 and 64.

Streams windows of ``T`` timesteps with the state carried (inference mode) and
reports timesteps per second (``T * windows / s`` per stream, and summed over the
batch), plus the dynamo graph count of one compiled step and the attention-layer
peak memory on the device.

    python benchmarks/gpu_model.py                           # sdt-2-256 on cuda
    python benchmarks/gpu_model.py --preset tiny --device cpu --batches 1 --windows 2   # smoke test

Prints Markdown tables.  Timings, not tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dvsapp.core.model import build_model, preset


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(model, frames: torch.Tensor, windows: int, device: str, warmup: int = 3) -> float:
    """Windows per second, streaming with the state carried."""
    state = model.initial_state(frames.shape[1], device=frames.device, dtype=frames.dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            _, state = model(frames, state)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(windows):
            _, state = model(frames, state)
        sync(device)
    return windows / (time.perf_counter() - t0)


def graph_count(model, frames: torch.Tensor) -> tuple[int, int]:
    """Dynamo graphs and graph breaks of one forward with an explicit state."""
    import torch._dynamo as dynamo

    state = model.initial_state(frames.shape[1], device=frames.device, dtype=frames.dtype)
    with torch.inference_mode():
        explained = dynamo.explain(model)(frames, state)
    dynamo.reset()
    return explained.graph_count, explained.graph_break_count


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sdt-2-256")
    ap.add_argument("--attention", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also run the attention memory benchmark")
    args = ap.parse_args(argv)
    dev = args.device
    overrides = {"attention": args.attention} if args.attention else {}
    cfg = preset(args.preset, **overrides)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    print(
        f"# {args.preset} ({cfg.attention}, T={cfg.timesteps}, {cfg.n_tokens} tokens) on {name}, torch {torch.__version__}"
    )
    torch.manual_seed(0)
    if dev.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(
        "| batch | dtype | mode | windows/s | timesteps/s (per stream) | sample-timesteps/s | ms / window |"
    )
    print("|---|---|---|---|---|---|---|", flush=True)
    models = {name: build_model(cfg).eval().to(dev, getattr(torch, name)) for name in args.dtypes}

    def frames_for(batch: int, dtype: torch.dtype) -> torch.Tensor:
        g = torch.Generator().manual_seed(batch)
        shape = (cfg.timesteps, batch, cfg.in_channels, *cfg.input_hw)
        return (torch.rand(shape, generator=g) < 0.05).to(dev, dtype)

    def row(batch: int, dtype_name: str, mode: str, model) -> None:
        t0 = time.perf_counter()
        try:
            wps = throughput(model, frames_for(batch, getattr(torch, dtype_name)), args.windows, dev)
        except Exception as exc:  # report and go on: one failing mode must not hide the rest
            print(
                f"| {batch} | {dtype_name} | {mode} | failed: {type(exc).__name__}: {exc} | | | |", flush=True
            )
            return
        total = time.perf_counter() - t0
        tps = wps * cfg.timesteps
        print(
            f"| {batch} | {dtype_name} | {mode} | {wps:.1f} | {tps:.0f} | {tps * batch:.0f} "
            f"| {1e3 / wps:.2f} |  <!-- {total:.0f} s incl. warm-up/compile -->",
            flush=True,
        )

    # eager first (fast), then the optional memory table, then the compiled runs (slow to build)
    for dtype_name, model in models.items():
        for batch in args.batches:
            row(batch, dtype_name, "eager", model)
    if args.memory:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_attention_memory import main as memory_main

        print()
        memory_main(["--device", dev, "--dim", "256", "--heads", "8"])
        print(flush=True)
    if args.no_compile:
        return
    model = models[args.dtypes[0]]
    graphs, breaks = graph_count(model, frames_for(1, getattr(torch, args.dtypes[0])))
    print(
        f"dynamo: {graphs} graph(s), {breaks} graph break(s) for one forward with explicit state\n",
        flush=True,
    )
    for batch in args.batches:
        row(batch, args.dtypes[0], "compile", torch.compile(model, dynamic=False))


if __name__ == "__main__":
    main()
