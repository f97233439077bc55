"""Start the GUI: one QApplication, one :class:`~dvsapp.app.gui.main_window.MainWindow`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6 import QtWidgets


def bundled_recording() -> Path:
    """The sample recording ``dvsapp demo`` plays (package data ``dvsapp.recordings``)."""
    from dvsapp.core.errors import EventFileError
    from dvsapp.core.resources import bundled_recording as _bundled

    path = _bundled()
    if not path.is_file():
        raise EventFileError(
            "the bundled recording is missing; run `python -m dvsapp.recordings.make_recordings`", path=path
        )
    return path


def require_display() -> None:
    """Raise a one-line :class:`~dvsapp.core.errors.ConfigError` when Qt would find no screen to open.

    Without it Qt prints several lines about its platform plugins and aborts the process.
    """
    from dvsapp.core.errors import ConfigError

    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "no display to open a window on: run under a desktop session or `xvfb-run`, "
            "or use `dvsapp classify` / `dvsapp replay FILE --export out.mp4` headless"
        )


def application() -> QtWidgets.QApplication:
    """The running QApplication, created on first use."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        require_display()
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setOrganizationName("dvsapp")
        app.setApplicationName("dvsapp")
    return app  # type: ignore[return-value]


def run_gui(
    uri: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    speed: float = 1.0,
    play: bool = True,
    loop: bool = False,
) -> int:
    """Open the main window (on ``uri`` when given) and run the Qt event loop; returns its exit code."""
    from dvsapp.app.gui.main_window import MainWindow

    app = application()
    # import torch and the pipeline now: an import inside the worker thread would hold the GIL
    # for seconds and freeze the first frames of the window
    import dvsapp.core.classify  # noqa: F401
    import dvsapp.core.pipeline  # noqa: F401

    window = MainWindow()
    window.loop_check.setChecked(loop)
    window.set_speed(speed)
    window.show()
    if checkpoint is not None:
        window.checkpoint = str(checkpoint)
    if uri is not None:
        window.open_uri(str(uri), play=play)
    return int(app.exec())
