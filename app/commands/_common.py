"""What every command shares: the one error mapper, the one progress bar, torch threads.

- :func:`error_exit` decides, for any exception, whether it is the user's (a
  ``dvsapp.core.errors`` error, an output that cannot be written, Ctrl-C) and then
  which single line goes to stderr and which exit status follows;
  :func:`handle_errors` (around every command body) and ``dvsapp.app.cli.main``
  (around the whole app) both use it.
- :class:`ProgressBar` is the one progress display (rich, on stderr, gone when done):
  fed by core's ``progress(done, total)`` callbacks or by explicit updates, it shows
  the rate and the time left computed from the work done so far.
- :func:`apply_threads` sets torch's thread pools before a command runs a model.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from dvsapp.core.errors import DvsAppError

F = TypeVar("F", bound=Callable)

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


# --------------------------------------------------------------------------- errors


def error_exit(exc: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit status)`` for an exception a user caused, else ``None``.

    ``DvsAppError`` and ``OSError`` (an output folder that is read-only, full or not
    permitted, a path that is not a folder...) exit 2 naming the path, as does a system
    library that fails to load; Ctrl-C exits 130.  Anything else is a bug: ``None``
    (the traceback is shown).
    """
    if isinstance(exc, DvsAppError):
        return str(exc), 2
    if isinstance(exc, OSError):
        text = str(exc).strip()
        reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
        return (f"{exc.filename}: {reason}" if exc.filename else " ".join(reason.split())), 2
    if isinstance(exc, ImportError) and "cannot open shared object file" in str(exc):
        library = str(exc).split(":")[0].strip()
        return (
            f"{library}: a system library is missing (for the GUI: `bash .ci/gui-deps` names them)",
            2,
        )
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    return None


def print_error(message: str) -> None:
    """Print ``dvsapp: error: MESSAGE`` (one line) to stderr."""
    if message == "interrupted":
        print("dvsapp: interrupted", file=sys.stderr, flush=True)
    else:
        print(f"dvsapp: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def handle_errors(func: F) -> F:
    """Turn a user's error into one line on stderr and its exit status (:func:`error_exit`).

    Wrap every command body with it (below ``@app.command()``), so both the
    console script and ``typer.testing.CliRunner`` see the same behaviour.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DvsAppError, OSError, ImportError, KeyboardInterrupt) as exc:
            mapped = error_exit(exc)
            if mapped is None:  # pragma: no cover - the tuple above is error_exit's domain
                raise
            print_error(mapped[0])
            raise typer.Exit(mapped[1]) from None

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- threads


def default_threads() -> int:
    """Torch threads per process when ``--threads`` is not given: half the cores this process
    may use (shared by the processes of a ``torchrun``), at least 1 and at most 4.

    Half, because an OpenMP pool as large as the machine spins against every other
    busy process: on a 2-core machine one thread is several times faster than two
    (docs/train.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(4, per_process // 2))


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Torch CPU threads (intra- and inter-op); default: half the cores, 1 to 4.",
        show_default=False,
    ),
]


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op and inter-op thread pools to ``threads`` (None: :func:`default_threads`).

    The inter-op pool can be sized only before torch first uses it; later calls keep it.
    Returns the intra-op thread count now in force.
    """
    import torch

    n = default_threads() if threads is None else int(threads)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already started (a second command in the same process, tests)
        pass
    return torch.get_num_threads()


# --------------------------------------------------------------------------- progress


def _si(value: float) -> str:
    """``1234567`` -> ``1.2 M``; small whole numbers as they are, small rates with two decimals."""
    value = float(value)
    for limit, suffix in ((1e9, " G"), (1e6, " M"), (1e4, " k")):
        if abs(value) >= limit:
            return f"{value / (limit if suffix != ' k' else 1e3):.1f}{suffix}"
    if value.is_integer() or abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}"


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ProgressBar:
    """The CLI's progress bar: rich, on stderr, transient (nothing stays when it ends).

    Parameters
    ----------
    label : text in front of the bar.
    unit : what ``done`` counts (``"events"``, ``"frames"``); shown after the counts.
        ``"%"``: ``done`` of ``total`` is a share of the work, shown as a percentage.
    rate_unit : what the rate counts (default ``unit``); see :meth:`update`'s ``rate``.
    enabled : False shows nothing (``--quiet``, ``--json``).
    start_after : show nothing until ``done`` reaches this (short jobs print nothing extra).

    Use as a context manager; pass the object itself as core's ``progress(done, total)``
    callback, or call :meth:`update`.  ``total=None`` draws a pulsing bar with the time so far.
    The rate and the time left are computed from the work done since :meth:`restart`,
    so a few slow steps still give an estimate.
    """

    def __init__(
        self,
        label: str,
        *,
        unit: str = "",
        rate_unit: str | None = None,
        enabled: bool = True,
        start_after: float = 0,
    ) -> None:
        self.label = label
        self.unit = unit
        self.rate_unit = unit if rate_unit is None else rate_unit
        self.enabled = enabled
        self.start_after = start_after
        self._progress = None
        self._task = None
        self._console = None
        self._t0 = time.monotonic()
        self.done: float = 0
        self.total: float | None = None

    # --- lifecycle
    def __enter__(self) -> ProgressBar:
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    @property
    def console(self):
        """The stderr console the bar draws on (print through it so lines and bar do not mix)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def print(self, text: str) -> None:
        """Print a line above the bar."""
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _start(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=None, count="", rate="", eta="", note="")

    # --- updates
    def restart(self, label: str | None = None, total: float | None = None) -> None:
        """A new phase (e.g. the next epoch): the counts, rate and time left start again."""
        if label is not None:
            self.label = label
        self._t0 = time.monotonic()
        self.done, self.total = 0, total
        if self._progress is not None:
            self._progress.reset(self._task, total=total, description=self.label)
        self.update(0, total)

    def update(
        self, done: float, total: float | None = None, *, rate: float | None = None, note: str = ""
    ) -> None:
        """Show ``done`` of ``total``; ``rate`` (per second, in ``rate_unit``) replaces the measured one."""
        self.done, self.total = done, total
        if not self.enabled or (done < self.start_after and self._progress is None):
            return
        if self._progress is None:
            self._start()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        if rate is None and done > 0:
            rate = done / elapsed
        eta = ""
        if total and done > 0:
            eta = f"ETA {_clock(elapsed / done * (total - done))}"
        if self.unit == "%":  # a fraction of the work: the share done, no rate
            count, rate = (f"{100 * done / total:.0f}%" if total else ""), None
        else:
            unit = f" {self.unit}" if self.unit else ""
            count = f"{_si(done)}/{_si(total)}{unit}" if total else (f"{_si(done)}{unit}" if done else "")
        rate_text = "" if rate is None else f"{_si(rate)} {self.rate_unit or 'it'}/s"
        self._progress.update(
            self._task, completed=done, total=total or None, count=count, rate=rate_text, eta=eta, note=note
        )

    def __call__(self, done: float, total: float | None = None) -> None:
        self.update(done, total)
