"""Latency of the spiking transformer per timestep, batch 1, streaming (state carried).

For each preset and attention variant: build the model (eval), feed windows of
``config.timesteps`` steps of random sparse event frames with the state carried,
and report the median wall time per timestep and the real-time factor
(``step_us`` / time per step).

    OMP_NUM_THREADS=2 python benchmarks/bench_model.py                # all presets
    python benchmarks/bench_model.py --presets tiny --threads 2 --windows 20
    python benchmarks/bench_model.py --checkpoint core/model/pretrained/tiny_synth.safetensors --threads 1 --windows 40
    python benchmarks/bench_model.py --energy-only --presets tiny     # energy per window
    python benchmarks/bench_model.py --energy-only --checkpoint core/model/pretrained/tiny_synth.safetensors
    python benchmarks/bench_model.py --energy-only --checkpoint core/model/pretrained/tiny_synth.safetensors \
        --recording recordings/gestures.aedat4     # every window of the bundled recording

Energy is estimated on a synthetic gesture window (``dvsapp.core.synth``) at the model's
input size.  An untrained model runs with batch-statistics BN (train mode) so its
neurons fire at realistic rates; a checkpoint runs in eval mode.

Prints a Markdown table.  Timings, not tests.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from dvsapp.core.model import ATTENTIONS, build_model, estimate_energy, preset


def sparse_frames(
    cfg, batch: int = 1, density: float = 0.05, seed: int = 0, steps: int | None = None
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (steps or cfg.timesteps, batch, cfg.in_channels, *cfg.input_hw)
    return (torch.rand(shape, generator=g) < density).float()


def gesture_frames(cfg, class_id: int = 1, seed: int = 0) -> torch.Tensor:
    """One window ``[T, 1, P, H, W]`` of a synthetic gesture rendered at the model's input size."""
    from dvsapp.core.binning import to_frames
    from dvsapp.core.events import SensorSize
    from dvsapp.core.synth import render_gesture

    h, w = cfg.input_hw
    start = 300_000
    events = render_gesture(class_id, seed, duration_us=start + cfg.window_us, sensor_size=SensorSize(w, h))
    frames = to_frames(
        events,
        SensorSize(w, h),
        time_window_us=cfg.step_us,
        start_time_us=start,
        end_time_us=start + cfg.window_us,
    )
    return torch.from_numpy(frames[: cfg.timesteps]).float().unsqueeze(1)


def recording_windows(cfg, path: str) -> list[torch.Tensor]:
    """The windows ``[T, 1, P, H, W]`` of a recording as the live pipeline feeds them to the model.

    Events fitted to the model input by :class:`dvsapp.core.filters.SpatialAdapter` (crop,
    the pipeline's default), binned into counts by :func:`dvsapp.core.binning.bin_windows`
    (the offline twin of ``StreamBinner``); windows without events are left out.
    """
    from dvsapp.core.binning import bin_windows
    from dvsapp.core.events import SensorSize
    from dvsapp.core.filters import SpatialAdapter
    from dvsapp.core.io import open_events

    reader = open_events(path)
    h, w = cfg.input_hw
    adapter = SpatialAdapter(reader.sensor_size, SensorSize(w, h), mode="crop")
    events = adapter(reader.read_all())
    windows = bin_windows(events, adapter.out_size, cfg.step_us, cfg.timesteps)
    return [torch.from_numpy(win.frames).float().unsqueeze(1) for win in windows if win.n_events > 0]


def recording_energy(args) -> None:
    """Energy per window of a checkpoint over every window of a recording (each window from rest)."""
    from dvsapp.core.model import load_checkpoint

    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    windows = recording_windows(model.config, args.recording)
    reports = [estimate_energy(model, frames) for frames in windows]
    energy = sorted(r.energy_pj * 1e-6 for r in reports)
    ann = statistics.mean(r.ann_energy_pj * 1e-6 for r in reports)
    att = sum(r.attention_energy_pj for r in reports)
    att_ann = sum(r.attention_ann_energy_pj for r in reports)
    rates = [statistics.mean(r.firing_rates.values()) for r in reports]
    cfg = model.config
    print(
        f"# {args.checkpoint.split('/')[-1]} ({cfg.attention}, T={cfg.timesteps} x {cfg.step_us / 1000:g} ms) "
        f"on {args.recording}: {len(windows)} windows with events"
    )
    print(
        "| energy / window, mean (uJ) | median | min | max | ANN energy / window (uJ) | ANN / SNN "
        "| mean firing rate | attention mixing / window (nJ) | vanilla attention (nJ) | attention ANN / ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    mean_e = statistics.mean(energy)
    print(
        f"| {mean_e:.3f} | {statistics.median(energy):.3f} | {energy[0]:.3f} | {energy[-1]:.3f} | {ann:.3f} "
        f"| {ann / mean_e:.1f} | {statistics.mean(rates):.3f} | {att * 1e-3 / len(reports):.3f} "
        f"| {att_ann * 1e-3 / len(reports):.3f} | {att_ann / att:.0f} |"
    )


def energy_table(args) -> None:
    from dvsapp.core.model import load_checkpoint

    print(
        "| model | attention | mean firing rate | SOPs / window | energy / window (uJ) | ANN energy (uJ) "
        "| ANN / SNN | attention: vanilla ANN / ours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    runs = []
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
        runs.append((f"checkpoint {args.checkpoint.split('/')[-1]}", model.eval()))
    else:
        for name in args.presets:
            for attention in args.attention:
                runs.append(
                    (
                        f"{name} (untrained, batch-stat BN)",
                        build_model(preset(name, attention=attention)).train(),
                    )
                )
    for label, model in runs:
        rep = estimate_energy(model, gesture_frames(model.config))
        rates = list(rep.firing_rates.values())
        print(
            f"| {label} | {model.config.attention} | {sum(rates) / len(rates):.3f} | {rep.total_sops:.3g} "
            f"| {rep.energy_pj * 1e-6:.2f} | {rep.ann_energy_pj * 1e-6:.2f} | {rep.energy_ratio:.1f} "
            f"| {rep.attention_ratio:.0f} |",
            flush=True,
        )


def time_per_step_ms(model, frames: torch.Tensor, windows: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall-clock and process-CPU ms per timestep over ``windows`` streamed windows.

    The CPU time (all threads of this process) is robust to other processes
    competing for the cores; wall time is what a live stream sees.
    """
    state = None
    wall, cpu = [], []
    with torch.inference_mode():
        for i in range(warmup + windows):
            t0, c0 = time.perf_counter(), time.process_time()
            _, state = model(frames, state)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= warmup:
                wall.append(dt)
                cpu.append(dc)
    steps = frames.shape[0]
    return statistics.median(wall) / steps * 1e3, statistics.median(cpu) / steps * 1e3


def _timing_row(name: str, cfg, steps: int, ms: float, cpu_ms: float) -> str:
    return (
        f"| {name} | {cfg.attention} | {cfg.n_tokens} | {steps} | {cfg.step_us / 1000:g} ms "
        f"| {ms:.2f} | {cpu_ms:.2f} | {cfg.step_us / 1000 / ms:.1f} |"
    )


def interleaved_ms(models: dict, frames: torch.Tensor, windows: int, rounds: int = 4) -> dict:
    """:func:`time_per_step_ms` of several models in alternating rounds: the median of each.

    On a shared machine the speed drifts over seconds; alternating the models puts
    them under the same drift, so their ratio holds even when the absolute figures move.
    """
    walls: dict = {name: [] for name in models}
    cpus: dict = {name: [] for name in models}
    per_round = max(2, windows // rounds)
    for _ in range(rounds):
        for name, model in models.items():
            ms, cpu_ms = time_per_step_ms(model, frames, per_round)
            walls[name].append(ms)
            cpus[name].append(cpu_ms)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in models}


def checkpoint_rows(args) -> None:
    """Timing rows of a trained checkpoint (eval mode), one per window length and runner.

    ``inference twin`` is what ``dvsapp classify`` and the GUI run on a CPU
    (:func:`dvsapp.core.model.inference.inference_twin`); ``model`` is the checkpoint's
    own module (batch norms, 1x1 convolutions), as training and evaluation run it.
    """
    from dvsapp.core.model import load_checkpoint
    from dvsapp.core.model.inference import inference_twin

    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    cfg = model.config
    runners = {"inference twin": inference_twin(model), "model": model}
    for t in args.timesteps or [cfg.timesteps]:
        frames = sparse_frames(cfg, steps=t)
        windows = max(2, args.windows * cfg.timesteps // t)
        for runner, (ms, cpu_ms) in interleaved_ms(runners, frames, windows).items():
            name = f"{args.checkpoint.split('/')[-1]} (D={cfg.embed_dim}), {runner}"
            print(_timing_row(name, cfg, t, ms, cpu_ms), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "sdt-2-256"])
    ap.add_argument("--attention", nargs="+", default=list(ATTENTIONS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument(
        "--timesteps",
        type=int,
        nargs="+",
        default=None,
        help="window lengths to time (default: each preset's)",
    )
    ap.add_argument("--energy-only", action="store_true", help="estimate energy per window instead of timing")
    ap.add_argument(
        "--checkpoint",
        default=None,
        help="time (or with --energy-only: energy of) this checkpoint instead of fresh presets",
    )
    ap.add_argument(
        "--recording", default=None, help="with --checkpoint: energy per window over this recording's windows"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.energy_only and args.recording:
        if not args.checkpoint:
            ap.error("--recording needs --checkpoint")
        recording_energy(args)
        return
    if args.energy_only:
        energy_table(args)
        return
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads"
    )
    cols = "| preset | attention | tokens | T | step | wall ms / timestep | CPU ms / timestep | x real time (wall) |"
    print(cols)
    print("|" + "---|" * (cols.count("|") - 1))
    if args.checkpoint:
        checkpoint_rows(args)
        return
    for name in args.presets:
        for attention in args.attention:
            for t in args.timesteps or [None]:
                cfg = preset(name, attention=attention, **({} if t is None else {"timesteps": t}))
                model = build_model(cfg).eval()
                frames = sparse_frames(cfg)
                # the same number of timesteps for every window length
                windows = args.windows if name == "tiny" else max(2, args.windows // 4)
                windows = max(2, windows * preset(name).timesteps // cfg.timesteps)
                ms, cpu_ms = time_per_step_ms(model, frames, windows)
                print(_timing_row(name, cfg, cfg.timesteps, ms, cpu_ms), flush=True)


if __name__ == "__main__":
    main()
