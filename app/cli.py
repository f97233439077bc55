"""The ``dvsapp`` command line (typer).

Every command body is one call into ``core``; errors from ``dvsapp.core.errors`` become
one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from dvsapp.app.commands import COMMAND_MODULES
from dvsapp.core.errors import DvsAppError

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


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit with ``code``."""
    print(f"dvsapp: error: {message}", file=sys.stderr)
    raise SystemExit(code)


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
    except DvsAppError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("dvsapp: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
