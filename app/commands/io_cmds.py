"""``dvsapp info`` and ``dvsapp convert``: look into and convert event files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import ProgressBar, handle_errors


def _format_triggers(info) -> str:
    if not info.n_triggers:
        return "0"
    channels = ", ".join(str(c) for c in info.trigger_channels)
    return (
        f"{info.n_triggers:,} ({info.n_triggers_rising:,} rising, {info.n_triggers_falling:,} falling; "
        f"channel {channels})"
    )


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
        ("triggers", _format_triggers(info)),
        ("imu", "-" if info.n_imu_samples is None else f"{info.n_imu_samples:,} samples"),
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

        with ProgressBar("reading", unit="events", enabled=not as_json, start_after=5_000_000) as bar:
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
        from dvsapp.core.atomic import check_writable
        from dvsapp.core.filters import Crop
        from dvsapp.core.io.convert import convert as run_convert

        check_writable(
            dst, need_bytes=src.stat().st_size if dst.suffix.lower() == ".aedat4" and src.is_file() else 0
        )
        with ProgressBar("converting", unit="events", enabled=not quiet, start_after=5_000_000) as bar:
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
            + (f", {report.n_triggers_out:,} triggers" if report.n_triggers_out else "")
        )
        if report.n_triggers_dropped:
            typer.echo(
                f"dropped {report.n_triggers_dropped:,} triggers: {dst.suffix or 'this'} files hold none "
                "(.aedat4 and .h5 do)",
                err=True,
            )
        if report.trigger_note:
            typer.echo(report.trigger_note, err=True)
