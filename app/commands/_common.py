"""Helpers shared by the command modules."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from dvsapp.core.errors import DvsAppError

F = TypeVar("F", bound=Callable)


def handle_errors(func: F) -> F:
    """Turn a ``dvsapp.core.errors`` exception into one line on stderr and exit status 2.

    Wrap every command body with it (below ``@app.command()``), so both the
    console script and ``typer.testing.CliRunner`` see the same behaviour.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DvsAppError as exc:
            print(f"dvsapp: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
