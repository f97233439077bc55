"""Coverage-guided fuzzing of dvsapp's readers with atheris (libFuzzer).

Usage::

    python -m tests.fuzz.run_fuzz TARGET CORPUS_DIR [libFuzzer options]

TARGET is one of ``readers``, ``labels``, ``checkpoint``.  The corpus folder is
seeded (``tests/fuzz/seeds.py``) when empty.  A finding (any exception other
than ``dvsapp.core.errors``, or an error message of more than one line) stops the run
and is saved under ``tests/fuzz/crashers/`` to be replayed by the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

# numba kernels are left uninstrumented: numba cannot compile atheris' probes
with atheris.instrument_imports(include=["dvsapp.core"], exclude=["dvsapp.core.io._kernels"]):
    import dvsapp.core.io  # noqa: F401
    import dvsapp.core.labels  # noqa: F401
    import dvsapp.core.model.checkpoint  # noqa: F401

from tests.fuzz.harness import TARGETS  # noqa: E402
from tests.fuzz.seeds import write_corpus  # noqa: E402

CRASHERS = Path(__file__).resolve().parent / "crashers"


def main() -> None:
    target, corpus = sys.argv[1], Path(sys.argv[2])
    if target not in TARGETS:
        raise SystemExit(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    if not corpus.is_dir() or not any(corpus.iterdir()):
        write_corpus(target, corpus)
    check = TARGETS[target]
    CRASHERS.mkdir(exist_ok=True)

    def one_input(data: bytes) -> None:
        check(data)

    args = [sys.argv[0], str(corpus), f"-artifact_prefix={CRASHERS}/{target}-", *sys.argv[3:]]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
