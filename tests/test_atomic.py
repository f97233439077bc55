"""dvsapp.core.atomic: outputs appear whole or not at all."""

from __future__ import annotations

import pytest

from dvsapp.core.atomic import atomic_path


def test_block_success_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target, suffix=".mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_block_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, exc):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(exc):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise exc()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_mode_is_applied(tmp_path):
    target = tmp_path / "labels.csv"
    with atomic_path(target, mode=0o640) as tmp:
        tmp.write_text("x")
    assert target.stat().st_mode & 0o777 == 0o640
