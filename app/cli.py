"""The ``dvsapp`` command line (typer).

Every command body is one call into ``core``; a user's error (``dvsapp.core.errors``,
an output that cannot be written, Ctrl-C) becomes one line on stderr and an exit
status (2; 130 for Ctrl-C), never a traceback: one mapper,
:func:`dvsapp.app.commands._common.error_exit`, decides for every command and for
this entry point.
"""

from __future__ import annotations

import signal
import sys
import threading


def _interrupted_while_starting(signum, frame) -> None:
    print("dvsapp: interrupted", file=sys.stderr, flush=True)
    raise SystemExit(130)


# Ctrl-C while the command modules import (a second or more) exits quietly, not with a traceback
# from inside an import; the usual handler comes back below, once the commands are registered
_STARTING = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _STARTING:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import importlib  # noqa: E402

import typer  # noqa: E402

from dvsapp.app.commands import COMMAND_MODULES  # noqa: E402
from dvsapp.app.commands._common import error_exit, print_error  # noqa: E402

app = typer.Typer(
    name="dvsapp",
    help="Event-camera (DVS) streaming vision: read, bin, classify and label event streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command group not written yet
        if exc.name != _name:
            raise
        continue
    _mod.register(app)

if _STARTING:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def version() -> str:
    """The installed distribution's version (``dvsapp --version``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("dvsapp")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dvsapp {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Event-camera (DVS) streaming vision: read, bin, classify and label event streams."""


#: ``dvsapp GROUP FILE ...`` means ``dvsapp GROUP DEFAULT FILE ...`` (e.g. ``dvsapp label rec.aedat4``)
DEFAULT_SUBCOMMANDS = {"label": "edit"}


def _with_default_subcommand(argv: list[str]) -> list[str]:
    if len(argv) < 2 or argv[0] not in DEFAULT_SUBCOMMANDS or argv[1].startswith("-"):
        return argv
    group = next(
        (c.typer_instance for c in app.registered_groups if c.name == argv[0] and c.typer_instance), None
    )
    if group is None:
        return argv
    known = {c.name or (c.callback.__name__ if c.callback else "") for c in group.registered_commands}
    if argv[1] in known:
        return argv
    return [argv[0], DEFAULT_SUBCOMMANDS[argv[0]], *argv[1:]]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = _with_default_subcommand(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=argv, standalone_mode=True)
    except BaseException as exc:  # what escaped a command's own handle_errors (typer's parsing, imports)
        mapped = error_exit(exc)
        if mapped is None:
            raise
        print_error(mapped[0])
        raise SystemExit(mapped[1]) from None


if __name__ == "__main__":
    main()
