"""Peak memory of one attention layer as the token count grows (64 -> 4096 tokens).

One encoder block's attention (shortcut neuron, Q/K/V, spike mixing, projection),
batch 1, one timestep, ``D`` channels, random membrane input, inference mode.

- CPU: peak bytes of live tensors created during the forward, tracked with a
  ``TorchDispatchMode`` (every op output is counted until it is freed; the input
  and the weights are not counted).
- CUDA (``--device cuda``): ``torch.cuda.max_memory_allocated`` above the baseline.

    python benchmarks/bench_attention_memory.py
    python benchmarks/bench_attention_memory.py --device cuda --dim 256 --heads 8

Prints a Markdown table (MiB) and the ``lrf`` / ``ssa`` ratio at the largest size.
"""

from __future__ import annotations

import argparse
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dvsapp.core.model import ATTENTIONS, build_model, preset
from dvsapp.core.model.layers import LIFLayer, Run


class PeakTensorMemory(TorchDispatchMode):
    """Tracks the peak total size of storages created by ops while active."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self._live or key == 0:
                continue
            nbytes = storage.nbytes()
            self._live.add(key)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._free, key, nbytes)
        return out


def attention_layer(attention: str, side: int, dim: int, heads: int):
    cfg = preset("tiny", input_hw=(side, side), patch_size=1, embed_dim=dim, heads=heads, attention=attention)
    attn = build_model(cfg).blocks[0].attn.eval()
    layers = [m for m in attn.modules() if isinstance(m, LIFLayer)]
    for slot, layer in enumerate(layers):
        layer.slot = slot
    return attn, layers, cfg


def peak_bytes(attention: str, side: int, dim: int, heads: int, device: str) -> int:
    attn, layers, cfg = attention_layer(attention, side, dim, heads)
    attn.to(device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 1, dim, cfg.n_tokens, generator=g) * 4).to(device)
    run = Run(states=[layer.initial_state(1, device=device) for layer in layers])
    with torch.inference_mode():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            attn(x, run)
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
        with PeakTensorMemory() as probe:
            out = attn(x, run)
            del out
        return probe.peak


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--sides", type=int, nargs="+", default=[8, 16, 32, 64], help="token grid sides")
    ap.add_argument("--attention", nargs="+", default=list(ATTENTIONS))
    args = ap.parse_args(argv)
    results: dict[str, dict[int, int]] = {}
    print(f"# one attention layer, D={args.dim}, heads={args.heads}, batch 1, T=1, device {args.device}")
    print("| tokens | " + " | ".join(f"{a} (MiB)" for a in args.attention) + " |")
    print("|---|" + "---|" * len(args.attention))
    for side in args.sides:
        n = side * side
        row = []
        for attention in args.attention:
            b = peak_bytes(attention, side, args.dim, args.heads, args.device)
            results.setdefault(attention, {})[n] = b
            row.append(f"{b / 2**20:.2f}")
        print(f"| {n} | " + " | ".join(row) + " |", flush=True)
    n_max = args.sides[-1] ** 2
    if "ssa" in results and "lrf" in results:
        ratio = results["lrf"][n_max] / results["ssa"][n_max]
        print(f"\nlrf / ssa peak memory at {n_max} tokens: {ratio:.4f} (goal <= 0.1)")
    return results


if __name__ == "__main__":
    main()
