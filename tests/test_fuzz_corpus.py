"""Replay the fuzzers' seeds and every saved finding: each must read or raise core.errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.harness import TARGETS

CRASHERS = Path(__file__).resolve().parent / "fuzz" / "crashers"


def _saved():
    for path in sorted(CRASHERS.glob("*-*")):
        target = path.name.split("-", 1)[0]
        if target in TARGETS:
            yield pytest.param(target, path, id=path.name)


@pytest.mark.parametrize(("target", "path"), list(_saved()))
def test_saved_finding_is_handled(target, path, tmp_path):
    TARGETS[target](path.read_bytes(), workdir=tmp_path)


@pytest.mark.parametrize("target", ["readers", "labels"])
def test_seed_corpus_reads(target, tmp_path):
    from tests.fuzz.seeds import SEEDS

    seeds = SEEDS[target]()
    results = {name: TARGETS[target](data, workdir=tmp_path) for name, data in seeds.items()}
    if target == "readers":
        # every complete seed file reads and yields events; cut real files may fail cleanly
        for name, n in results.items():
            if not name.startswith("shared_") or name in ("shared_nmnist_sample", "shared_ncars_sample"):
                assert n > 0, f"seed {name} did not read"
    else:
        assert results["valid"] == 2 and results["empty_body"] == 0


@pytest.mark.parametrize("cut", [1, 13, 100, 1000])
def test_truncated_seeds_never_escape(cut, tmp_path):
    from tests.fuzz.seeds import reader_seeds

    for data in reader_seeds().values():
        TARGETS["readers"](data[: max(2, len(data) - cut)], workdir=tmp_path)
