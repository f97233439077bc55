"""``dvsapp classify`` and ``dvsapp record``: run a source through the model, or to a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import handle_errors
from dvsapp.core.errors import ConfigError


class _RichSink:
    """One rich line per prediction: time, label, confidence, latency."""

    def __init__(self, console) -> None:
        self.console = console
        self.t0_us: int | None = None

    async def consume(self, window, prediction) -> None:
        p = prediction
        if self.t0_us is None:
            self.t0_us = p.t_start_us
        colour = "green" if p.confidence >= 0.5 else "yellow"
        self.console.print(
            f"[dim]{(p.t_us - self.t0_us) / 1e6:8.2f}s[/dim] [bold {colour}]{p.label:<27}[/]"
            f"{p.confidence:6.1%} [dim]{p.n_events:6d}ev {p.latency_us / 1000:6.1f}ms[/dim]",
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        pass


def _print_summary(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title="summary", show_header=False, title_justify="left")
    for key in (
        "source",
        "model",
        "events_in",
        "events_binned",
        "windows",
        "dropped_windows",
        "reconnects",
        "time_jumps",
        "ground_truth",
        "scored",
        "accuracy",
        "latency_p50_ms",
        "latency_p99_ms",
        "model_ms_mean",
        "realtime_factor",
        "torch_threads",
    ):
        value = summary.get(key)
        if key == "accuracy" and value is not None:
            value = f"{value:.1%}"
        table.add_row(key, "-" if value is None else str(value))
    per_class = ", ".join(f"{k}: {v}" for k, v in summary.get("per_class", {}).items())
    table.add_row("per_class", per_class or "-")
    console.print(table)


def classify(
    file: Annotated[Path | None, typer.Argument(help="Recording to classify (any readable format).")] = None,
    live: Annotated[bool, typer.Option("--live", help="Classify a live source (see --source).")] = False,
    sample: Annotated[
        bool, typer.Option("--sample", help="Classify the bundled sample recording (package data).")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            help="Source URI: file:PATH?speed=1, dv://HOST:PORT, inivation[:SERIAL], webcam[:N], synthetic[:SEED]."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="Checkpoint (.safetensors) or a shipped model: tiny (the default), small."
        ),
    ] = None,
    window_ms: Annotated[
        float | None, typer.Option(help="Window length in ms (default: the model's).")
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per prediction on stdout; summary on stderr.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write predictions to this CSV (flushed per line).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out.")] = False,
    speed: Annotated[
        float | None, typer.Option(help="Replay speed for a FILE (default 0 = as fast as possible).")
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    smoothing: Annotated[
        float, typer.Option(help="Extra smoothing of probabilities across windows, in [0, 1).")
    ] = 0.0,
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="Torch threads of a model on the CPU. 1 leaves the other cores to decoding and "
            "binning (best on a busy machine); 2 replayed a file 1.3x faster on an idle 2-core one.",
        ),
    ] = 1,
) -> None:
    """Classify a recording or a live stream; one line per prediction, a summary at the end."""
    from rich.console import Console

    from dvsapp.core.pipeline import JsonLinesSink, classify_source

    if sample:
        from dvsapp.core.resources import bundled_recording

        if file is not None or live or source:
            raise ConfigError("--sample classifies the bundled recording: give no FILE, --live or --source")
        file = bundled_recording()
    if file is not None and (live or source):
        raise ConfigError("give a FILE, or --live / --source, not both")
    if file is None and not live and not source:
        raise ConfigError("nothing to classify: give a FILE, --source URI or --live")
    err = Console(stderr=True, highlight=False)
    if json_lines:
        sinks = [JsonLinesSink(sys.stdout)]
        on_status = lambda msg: print(f"dvsapp: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    else:
        sinks = [_RichSink(Console(highlight=False))]
        on_status = lambda msg: err.print(f"[dim]{msg}[/dim]")  # noqa: E731
    target = str(file) if file is not None else source
    report = classify_source(
        target,
        checkpoint=model,
        sinks=sinks,
        out_csv=out,
        force=force,
        window_ms=window_ms,
        speed=(0.0 if speed is None else speed) if file is not None else speed,
        seconds=seconds,
        device=device,
        smoothing=smoothing,
        on_status=on_status,
        torch_threads=threads,
    )
    if json_lines:
        print(json.dumps({"summary": report.as_dict()}), file=sys.stderr, flush=True)
    else:
        _print_summary(report.as_dict(), Console(highlight=False))


def record(
    out: Annotated[Path, typer.Argument(help="Output file: .aedat4 (dv-processing) or .h5 (or .npz, .csv).")],
    source: Annotated[str, typer.Option(help="Source URI (see `dvsapp classify --help`).")] = "synthetic",
    seconds: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: end of stream or Ctrl-C).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite OUT.")] = False,
) -> None:
    """Record any source to an event file."""
    from dvsapp.core.pipeline import record_source

    result = record_source(source, out, seconds=seconds, force=force)
    print(
        f"wrote {result.n_events} events ({result.duration_us / 1e6:.3f} s, {result.sensor_size}) to {result.path}",
        file=sys.stderr,
    )


def register(app: typer.Typer) -> None:
    """Add ``classify`` and ``record`` to the CLI."""
    app.command("classify")(handle_errors(classify))
    app.command("record")(handle_errors(record))
