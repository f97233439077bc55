"""``dvsapp train`` / ``dvsapp eval`` without the other command groups (for GPU machines without Qt).

Usage: ``python benchmarks/train_entry.py train ...`` or
``torchrun --nproc_per_node=N benchmarks/train_entry.py train ...``; the options
are exactly those of ``dvsapp train`` / ``dvsapp eval``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer  # noqa: E402

from dvsapp.app.commands import train_cmds  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
train_cmds.register(app)

if __name__ == "__main__":
    app()
