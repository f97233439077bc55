"""GUI commands: ``dvsapp demo``, ``dvsapp replay FILE``, ``dvsapp gui``.

Qt is imported only when a command runs, so ``dvsapp --help`` stays fast and
works without a display; before it is, the display and the system libraries Qt
needs are checked (one line, exit 2, when one is missing).  Ctrl-C closes the
window cleanly (exit 130).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import ProgressBar, handle_errors

SpeedOpt = Annotated[
    float,
    typer.Option("--speed", help="Replay speed factor 0.1..10; 0 = as fast as possible.", min=0.0, max=10.0),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", help="Checkpoint (.safetensors) or a shipped model: tiny (the default), small."
    ),
]


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        model: ModelOpt = None,
        speed: SpeedOpt = 1.0,
        loop: Annotated[
            bool, typer.Option("--loop/--no-loop", help="Replay the recording in a loop.")
        ] = True,
    ) -> None:
        """Open the GUI on the bundled recording with the bundled model, playing."""
        from dvsapp.app.gui.app import bundled_recording, run_gui

        raise typer.Exit(run_gui(bundled_recording(), checkpoint=model, speed=speed, loop=loop))

    @app.command("replay")
    @handle_errors
    def replay(
        file: Annotated[
            Path, typer.Argument(help="Event recording (.aedat4, .h5, .npz, .csv, .raw, .dat ...).")
        ],
        model: ModelOpt = None,
        speed: SpeedOpt = 1.0,
        loop: Annotated[bool, typer.Option("--loop/--no-loop", help="Replay in a loop.")] = False,
        export: Annotated[
            Path | None,
            typer.Option(
                "--export", help="Render the views to this video (mp4, OpenCV) instead of a window."
            ),
        ] = None,
        fps: Annotated[
            float, typer.Option("--fps", help="Video frames per second (--export).", min=1.0)
        ] = 30.0,
        size: Annotated[str, typer.Option("--size", help="Video size WIDTHxHEIGHT (--export).")] = "1280x720",
        duration_s: Annotated[
            float | None,
            typer.Option("--duration", help="Export at most this many seconds of the recording."),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Overwrite the --export file.")] = False,
    ) -> None:
        """Open FILE in the GUI, or with --export render the GUI's views to a video (no window)."""
        if export is None:
            from dvsapp.app.gui.app import run_gui
            from dvsapp.core.io import open_events

            open_events(file)  # an unreadable file fails here with one line, before any window opens
            raise typer.Exit(run_gui(file, checkpoint=model, speed=speed, loop=loop))
        from dvsapp.app.gui.export import ExportOptions, export_video
        from dvsapp.core.atomic import check_writable
        from dvsapp.core.errors import OutputExistsError
        from dvsapp.core.events import SensorSize

        size_wh = SensorSize.parse(size)
        options = ExportOptions(
            fps=fps, speed=speed or 1.0, size_wh=(size_wh.width, size_wh.height), max_duration_s=duration_s
        )
        if export.exists() and not force:
            raise OutputExistsError(path=export)
        check_writable(export)
        with ProgressBar("exporting", unit="%") as bar:
            summary = export_video(
                file,
                export,
                checkpoint=model,
                options=options,
                force=force,
                progress=lambda fraction: bar.update(fraction, 1.0),
            )
        typer.echo(
            f"wrote {summary.path}: {summary.frames} frames ({summary.duration_s:.1f} s), "
            f"{summary.windows} model windows"
        )

    @app.command("gui")
    @handle_errors
    def gui(model: ModelOpt = None) -> None:
        """Open the GUI empty, with the source picker (file, dv://, USB camera, webcam, synthetic)."""
        from dvsapp.app.gui.app import run_gui

        raise typer.Exit(run_gui(None, checkpoint=model))
