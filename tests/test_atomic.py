"""dvsapp.core.atomic: outputs appear whole or not at all."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dvsapp.core.atomic import atomic_path
from dvsapp.core.errors import OutputError

RECORDING = Path(__file__).resolve().parents[1] / "recordings" / "gestures.aedat4"


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


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _write_event_file(path):
    from dvsapp.core.events import SensorSize, random_events
    from dvsapp.core.io import write_events

    write_events(path, random_events(500, (32, 32, 2), duration_us=50_000, seed=1), SensorSize(32, 32))


def _write_checkpoint(path):
    from dvsapp.core.model import PRESETS, SpikingTransformer, save_checkpoint

    save_checkpoint(path, SpikingTransformer(PRESETS["tiny"]))


def _write_dataset(path):
    from dvsapp.core.labels import export_dataset

    export_dataset([RECORDING], path)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("plain.bin", lambda p: atomic_path_write(p)),  # labels, reports, frame caches
        ("events.h5", _write_event_file),
        ("events.aedat4", _write_event_file),
        ("events.npz", _write_event_file),
        ("model.safetensors", _write_checkpoint),
        ("dataset.h5", _write_dataset),
    ],
)
def test_every_output_gets_the_umask_mode(tmp_path, umask_027, name, write):
    """Datasets, recordings, checkpoints and plain outputs alike: ``0666 & ~umask``, no temp left."""
    if name == "dataset.h5" and not RECORDING.is_file():
        pytest.skip("needs the bundled recording")
    target = tmp_path / name
    write(target)
    assert target.stat().st_mode & 0o777 == umask_027
    assert [p.name for p in tmp_path.iterdir() if p.name != name and not p.name.endswith(".optim")] == []


def atomic_path_write(path):
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"x")


def test_a_rewritten_file_keeps_its_mode(tmp_path):
    target = tmp_path / "labels.csv"
    target.write_text("old")
    target.chmod(0o600)
    atomic_path_write(target)
    assert target.stat().st_mode & 0o777 == 0o600


def test_event_writers_use_the_one_temp_name_scheme(tmp_path):
    from dvsapp.core.events import SensorSize, random_events
    from dvsapp.core.io import open_writer

    with open_writer(tmp_path / "a.h5", SensorSize(32, 32)) as writer:
        writer.write(random_events(100, (32, 32, 2), duration_us=10_000, seed=2))
        (temp,) = list(tmp_path.iterdir())
        assert (
            temp.name.startswith(".a.h5.") and temp.suffix == ".h5"
        )  # temp_beside's ".<name>.<random><suffix>"
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_a_full_disk_inside_the_block_is_one_output_error_naming_the_target(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(OutputError) as info:
        with atomic_path(target, suffix=".h5") as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert str(info.value) == f"{target}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_fails_when_the_temp_is_made(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="file/out.csv: cannot write"):
        with atomic_path(blocker / "out.csv"):
            pass
