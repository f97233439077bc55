"""``dvsapp simulate``: a video or synthetic gestures through the DVS emulator, into an event file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import ProgressBar, handle_errors
from dvsapp.core.atomic import check_writable
from dvsapp.core.errors import ConfigError
from dvsapp.core.events import SensorSize


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    @handle_errors
    def simulate(
        paths: Annotated[
            list[Path],
            typer.Argument(
                metavar="[VIDEO] OUT",
                help="VIDEO and OUT, or only OUT with --gestures. OUT's extension picks the format "
                "(.aedat4, .h5, .npz, .csv).",
                show_default=False,
            ),
        ],
        gestures: Annotated[
            int | None,
            typer.Option("--gestures", "-g", help="Render N synthetic gestures instead of a video.", min=1),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the scene / sensor noise.")] = 0,
        size: Annotated[
            str | None,
            typer.Option(help="Sensor size WxH (default: 128x128 for gestures, the video's own size)."),
        ] = None,
        threshold: Annotated[float, typer.Option(help="Contrast threshold, log units (video).")] = 0.2,
        refractory_us: Annotated[int, typer.Option(help="Refractory period, us (video).")] = 100,
        noise_hz: Annotated[
            float, typer.Option(help="Shot-noise events per pixel per second (video).")
        ] = 0.0,
        leak_hz: Annotated[float, typer.Option(help="Leak events per pixel per second (video).")] = 0.0,
        fps: Annotated[
            float | None, typer.Option(help="Frame rate when the video does not state one.")
        ] = None,
        labels: Annotated[
            bool, typer.Option("--labels/--no-labels", help="Write <stem>_labels.csv beside OUT (gestures).")
        ] = True,
        force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Turn a video (any OpenCV-readable file) or N synthetic gestures into events.

        Examples: dvsapp simulate clip.mp4 clip.aedat4 | dvsapp simulate --gestures 11 --seed 3 gestures.h5
        """
        want = 1 if gestures is not None else 2
        if len(paths) != want:
            usage = "OUT with --gestures" if gestures is not None else "VIDEO OUT (or --gestures N OUT)"
            raise ConfigError(f"expected {usage}, got {len(paths)} path(s)")
        sensor = SensorSize.parse(size) if size else None
        check_writable(paths[-1])
        if gestures is not None:
            from dvsapp.core.synth import write_gesture_sequence

            out = paths[0]
            with ProgressBar("rendering", unit="frames", enabled=not quiet) as bar:
                n_events, segments = write_gesture_sequence(
                    out,
                    gestures,
                    seed=seed,
                    sensor_size=sensor or SensorSize(128, 128),
                    force=force,
                    labels=labels,
                    progress=bar,
                )
            typer.echo(
                f"{out}: {n_events} events, {len(segments)} gestures"
                + (", labels beside it" if labels else "")
            )
            return
        from dvsapp.core.emulator import simulate_video

        video, out = paths
        with ProgressBar("emulating", unit="frames", enabled=not quiet) as bar:
            n_events = simulate_video(
                video,
                out,
                size=sensor,
                fps=fps,
                force=force,
                seed=seed,
                progress=bar,
                threshold=threshold,
                refractory_us=refractory_us,
                shot_noise_rate_hz=noise_hz,
                leak_rate_hz=leak_hz,
            )
        typer.echo(f"{out}: {n_events} events")
