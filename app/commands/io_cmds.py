"""``dvsapp info`` and ``dvsapp convert``: look into and convert event files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import handle_errors


class _Progress:
    """A rich progress bar on stderr, fed by core's ``progress(done, total)`` callbacks.

    It starts only after ``delay_events`` events, so short files print nothing extra.
    """

    def __init__(self, label: str, *, enabled: bool = True, delay_events: int = 5_000_000) -> None:
        self.label = label
        self.enabled = enabled
        self.delay_events = delay_events
        self._progress = None
        self._task = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled or done < self.delay_events:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("events"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=total)
        self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def _format_info(info) -> str:
    rows = [
        ("file", info.path),
        ("format", info.format),
        ("sensor", f"{info.width}x{info.height}"),
        ("camera", info.camera or "-"),
        ("events", f"{info.n_events:,}"),
        ("duration", f"{info.duration_us / 1e6:.6f} s ({info.duration_us:,} us)"),
        ("first / last t", f"{info.t_first_us} / {info.t_last_us} us"),
        ("event rate", f"{info.event_rate_hz / 1e6:.3f} Mev/s"),
        (
            "polarity",
            "-"
            if info.on_fraction is None
            else f"{info.on_fraction:.1%} ON ({info.n_on:,}) / {1 - info.on_fraction:.1%} OFF ({info.n_off:,})",
        ),
        ("labels", info.labels_path or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def register(app: typer.Typer) -> None:
    @app.command("info")
    @handle_errors
    def info(
        file: Annotated[
            Path,
            typer.Argument(help="Event file (AEDAT 2/3.1/4, EVT2/3 RAW, DAT, .bin, npy/npz, CSV, HDF5)."),
        ],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object instead of a table.")
        ] = False,
    ) -> None:
        """Format, sensor, camera, event count, duration, event rate and polarity balance of FILE."""
        from dvsapp.core.io.info import describe

        with _Progress("reading", enabled=not as_json) as bar:
            result = describe(file, progress=bar)
        typer.echo(json.dumps(result.to_dict()) if as_json else _format_info(result))

    @app.command("convert")
    @handle_errors
    def convert(
        src: Annotated[Path, typer.Argument(help="Input event file (any readable format).")],
        dst: Annotated[
            Path,
            typer.Argument(help="Output file; the extension picks the format: .aedat4 .h5 .hdf5 .npz .csv"),
        ],
        crop: Annotated[
            str | None,
            typer.Option("--crop", metavar="X,Y,W,H", help="Keep this pixel window (input pixels)."),
        ] = None,
        downsample: Annotated[
            int,
            typer.Option("--downsample", min=1, help="Integer spatial downsampling factor (after --crop)."),
        ] = 1,
        force: Annotated[bool, typer.Option("--force", help="Overwrite DST if it exists.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Convert SRC to DST, streaming (memory bounded by a chunk, not the file)."""
        from dvsapp.core.io.convert import Crop
        from dvsapp.core.io.convert import convert as run_convert

        with _Progress("converting", enabled=not quiet) as bar:
            report = run_convert(
                src,
                dst,
                crop=Crop.parse(crop) if crop else None,
                downsample=downsample,
                force=force,
                progress=bar,
            )
        typer.echo(
            f"{report.output_path}: {report.n_events_out:,} events ({report.sensor_size_out}) "
            f"from {report.n_events_in:,} {report.input_format} events"
        )
