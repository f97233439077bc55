"""Model checkpoints: safetensors round trip, and every bad file gives CheckpointError."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dvsapp.core.errors import CheckpointError
from dvsapp.core.model import build_model, bundled_checkpoint, load_checkpoint, preset, save_checkpoint
from dvsapp.core.model.checkpoint import CHECKPOINT_FORMAT, read_checkpoint_metadata


def tiny_model(**overrides):
    cfg = preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=16, heads=2, **overrides)
    torch.manual_seed(0)
    return build_model(cfg)


def test_round_trip_keeps_weights_config_and_metadata(tmp_path):
    model = tiny_model(attention="lrf", class_names=("a", "b", "c"))
    with torch.no_grad():
        model.blocks[0].attn.q[1].running_mean.add_(0.25)  # buffers travel too
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", model, metadata={"epochs": 3, "acc": 0.5})
    loaded, meta = load_checkpoint(path)
    assert loaded.config == model.config
    assert meta["epochs"] == 3 and meta["acc"] == 0.5
    assert meta["class_names"] == ["a", "b", "c"]
    assert meta["config"]["attention"] == "lrf"
    assert not loaded.training
    for (n1, t1), (n2, t2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2)
    frames = (torch.rand(2, 1, 2, 16, 16) < 0.3).float()
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(frames)[0], loaded(frames)[0])
    assert not list(tmp_path.glob("sub/*.tmp"))  # atomic write left nothing behind


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "content", [b"", b"abc", b"\xff" * 64, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}xx"]
)
def test_garbage_files(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_pickle_is_refused_not_loaded(tmp_path):
    path = tmp_path / "evil.safetensors"

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    torch.save(tiny_model().state_dict(), tmp_path / "torch.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "torch.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_safetensors_without_config(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a dvsapp model checkpoint"):
        load_checkpoint(path)


def _rewrite_config(src, dst, **changes):
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        header = dict(f.metadata())
    config = json.loads(header["config"])
    config.update(changes)
    header["config"] = json.dumps(config)
    save_file(load_file(str(src)), str(dst), metadata=header)


def test_config_that_does_not_match_weights(tmp_path):
    src = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    _rewrite_config(src, tmp_path / "wide.safetensors", embed_dim=32)
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_checkpoint(tmp_path / "wide.safetensors")
    _rewrite_config(src, tmp_path / "deep.safetensors", depth=2)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "deep.safetensors")
    _rewrite_config(src, tmp_path / "classes.safetensors", class_names=["a", "b"])
    with pytest.raises(CheckpointError, match="head.weight"):
        load_checkpoint(tmp_path / "classes.safetensors")


def test_invalid_config_values(tmp_path):
    src = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    _rewrite_config(src, tmp_path / "bad.safetensors", attention="nonsense")
    with pytest.raises(CheckpointError, match="invalid config"):
        load_checkpoint(tmp_path / "bad.safetensors")
    _rewrite_config(src, tmp_path / "bad2.safetensors", extra_field=1)
    with pytest.raises(CheckpointError, match="invalid config"):
        read_checkpoint_metadata(tmp_path / "bad2.safetensors")


def test_wrong_format_tag(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": CHECKPOINT_FORMAT + "x", "config": "{}"})
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)


def test_unserialisable_metadata(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model(), metadata={"x": object()})


def test_bundled_checkpoint_path():
    path = bundled_checkpoint()
    assert path.name == "tiny_synth.safetensors" and path.parent.name == "pretrained"
    if path.exists():  # once trained and shipped, it must load as the tiny preset
        model, meta = load_checkpoint(path)
        assert model.config.input_hw == (64, 64)
        assert meta["class_names"] == list(model.config.class_names)


def test_shipped_models_resolve_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from dvsapp.core.model.checkpoint import resolve_checkpoint

    small = resolve_checkpoint("small")
    assert small == bundled_checkpoint("small") and small.name == "small_synth.safetensors"
    assert resolve_checkpoint(None) == bundled_checkpoint() == resolve_checkpoint("tiny")
    model, meta = load_checkpoint(small)  # the 128x128 model, with how it was made
    assert model.config.input_hw == (128, 128) and model.config.n_tokens == 256
    assert meta["recipe"]["input_size"][:2] == [128, 128]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").write_bytes(b"")
    assert resolve_checkpoint("small") == Path("small")  # a path the user has is never replaced
    assert resolve_checkpoint("elsewhere/small") == Path("elsewhere/small")
