"""Start the GUI: one QApplication, one window, and a clean exit on Ctrl-C.

Before Qt is touched, :func:`require_gui` checks that a window can open at all (a
display, and the system libraries Qt's platform plugin loads), so a missing piece
is one line and exit status 2 instead of Qt's abort.  :class:`SigintCloser` makes
Ctrl-C close the window the way its close button does, at any moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""


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


def require_gui() -> None:
    """Everything a window needs, checked before Qt loads: a display, then the system libraries.

    Raises
    ------
    ConfigError
        One line: no display, or the missing system libraries and their packages
        (:func:`dvsapp.app.gui.system_libs.require_gui_libraries`).
    """
    from dvsapp.app.gui.system_libs import require_gui_libraries

    require_display()
    require_gui_libraries()


def application():
    """The running ``QApplication``, created on first use (after :func:`require_gui`)."""
    loaded = sys.modules.get("PySide6.QtWidgets")
    app = loaded.QApplication.instance() if loaded is not None else None
    if app is not None:
        return app
    require_gui()  # before PySide6 loads: a missing library is one line, not Qt's abort
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setOrganizationName("dvsapp")
        app.setApplicationName("dvsapp")
    return app


class SigintCloser:
    """Ctrl-C (SIGINT) closes the GUI cleanly at any moment.

    Install it before the slow start-up work (imports, model loading): until the
    ``QApplication`` exists a Ctrl-C stops the start-up with ``KeyboardInterrupt``
    (nothing is open, nothing written; the CLI says ``interrupted``, exit 130); while
    the window is being built it is remembered and the window closes as soon as it is
    attached (an exception there could land inside a call from Qt and be dropped).  Once
    :meth:`attach`-ed, a Ctrl-C asks Qt to close the window, exactly as its close
    button does (the worker stops, recordings are finished or removed, settings
    saved); a second Ctrl-C quits the event loop.  A periodic timer lets Python run
    the handler while Qt's event loop is in C++, so the signal is never deferred
    until the next Python slot (where it used to raise ``KeyboardInterrupt``).
    """

    TICK_MS = 100

    def __init__(self) -> None:
        self.requested = 0
        self._window = None
        self._timer = None
        self._previous = signal.getsignal(signal.SIGINT)
        # a Ctrl-C the caller chose to ignore (nohup, a background job) stays ignored
        self._installed = self._previous is not signal.SIG_IGN
        if self._installed:
            signal.signal(signal.SIGINT, self._handle)

    @property
    def interrupted(self) -> bool:
        return self.requested > 0

    def attach(self, window) -> None:
        """Close ``window`` on Ctrl-C (one that came before this closes it at once)."""
        from PySide6 import QtCore

        self._window = window
        self._timer = QtCore.QTimer(window)
        self._timer.timeout.connect(lambda: None)  # a Python slot: the interpreter gets to run handlers
        self._timer.start(self.TICK_MS)
        if self.requested:
            QtCore.QTimer.singleShot(0, self._close)

    def _handle(self, signum, frame) -> None:
        self.requested += 1
        if self._window is None:
            qt = sys.modules.get("PySide6.QtWidgets")
            if qt is None or qt.QApplication.instance() is None:
                # still importing (torch, Qt) with nothing open or written yet: leave at once.
                # Not by raising KeyboardInterrupt: one that lands inside a C extension's
                # initialisation (shiboken's signature module) aborts the interpreter
                # ("Fatal Python error") instead of unwinding.
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(130)
            # building the window: this may run inside a call from Qt, where an exception would
            # be printed and dropped; the window is closed as soon as it is attached instead
            return
        from PySide6 import QtCore, QtWidgets

        if self.requested == 1:
            QtCore.QTimer.singleShot(0, self._close)
        else:
            QtCore.QTimer.singleShot(0, QtWidgets.QApplication.quit)

    def _close(self) -> None:
        window = self._window
        if window is None:
            return
        if hasattr(window, "ask_on_close"):  # the labeler: edits are in the autosave sidecar; no dialog
            window.ask_on_close = False
        window.close()

    def restore(self) -> None:
        """Put the previous SIGINT handler back and stop the timer."""
        if self._timer is not None:
            self._timer.stop()
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        self._window = None


def exec_window(window, closer: SigintCloser) -> int:
    """Run the Qt event loop until ``window`` closes (Ctrl-C closes it); 130 after Ctrl-C, else Qt's status."""
    app = application()
    closer.attach(window)
    try:
        code = int(app.exec())
    finally:
        closer.restore()
    return INTERRUPTED if closer.interrupted else code


def run_gui(
    uri: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    speed: float = 1.0,
    play: bool = True,
    loop: bool = False,
) -> int:
    """Open the main window (on ``uri`` when given) and run the Qt event loop; returns its exit code."""
    closer = SigintCloser()
    try:
        application()
        # import torch and the pipeline now: an import inside the worker thread would hold the GIL
        # for seconds and freeze the first frames of the window
        import dvsapp.core.classify  # noqa: F401
        import dvsapp.core.pipeline  # noqa: F401
        from dvsapp.app.gui.main_window import MainWindow

        window = MainWindow()
    except BaseException:
        closer.restore()
        raise
    if closer.interrupted:  # Ctrl-C while the window was being built: nothing started yet
        closer.restore()
        return INTERRUPTED
    window.loop_check.setChecked(loop)
    window.set_speed(speed)
    window.show()
    if checkpoint is not None:
        window.checkpoint = str(checkpoint)
    if uri is not None:
        window.open_uri(str(uri), play=play)
    return exec_window(window, closer)
