"""CPU training smoke runs: the loss goes down, checkpoints reload exactly, resume, options, DDP.

The model is the ``tiny`` preset shrunk through ``model_overrides`` (32x32 input,
32 channels, 4 timesteps of 20 ms) so that a run of a few dozen steps takes
seconds on one CPU core; the data are two synthetic gesture sequences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dvsapp.core.errors import ConfigError
from dvsapp.core.train.datasets import ClipBank, bin_recording, synthetic_recording
from dvsapp.core.train.evaluate import run_model_on_frames
from dvsapp.core.train.trainer import (
    TrainConfig,
    build_model,
    config_with,
    cosine_lr,
    preprocess_for,
    tet_loss,
    train,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"input_hw": [32, 32], "embed_dim": 32, "heads": 2, "patch_size": 8, "timesteps": 4, "step_us": 20000}
SMALL_SET = [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]


def small_config(out: Path, **changes) -> TrainConfig:
    base = dict(
        out_dir=str(out),
        val_split=None,
        test_split=None,
        epochs=8,
        batch_size=8,
        clips_per_epoch=64,
        windows_per_clip=2,
        lr=1e-2,
        device="cpu",
        amp=False,
        seed=0,
        model_overrides=dict(SMALL),
    )
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: CI machines are shared, and an oversubscribed OpenMP pool crawls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frames(one_thread):
    """Two synthetic sequences (8 gestures) binned for the small model, plus a third for validation."""
    pre = preprocess_for(build_model(small_config(Path("unused"))).config)
    return [bin_recording(synthetic_recording(seed, 4), pre) for seed in (0, 1, 100_000)]


def fixed_batch(train_frames, n: int = 16):
    bank = ClipBank(train_frames, 8)
    x, y = bank.gather(bank.epoch_starts(n, seed=99, epoch=0))
    return x.transpose(0, 1), y.transpose(0, 1)  # [S, B, ...], [S, B]


def batch_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch[0], None)
    return float(tet_loss(logits, batch[1])[0])


def test_cpu_smoke_run_lowers_the_loss_and_the_checkpoint_reloads_to_the_same_predictions(tmp_path, frames):
    from dvsapp.core.model import load_checkpoint

    train_frames, val_frames = frames[:2], frames[2:]
    cfg = small_config(tmp_path / "run", val_split="val")
    batch = fixed_batch(train_frames)
    torch.manual_seed(cfg.seed)  # the trainer seeds the same way before building its model
    initial = batch_loss(build_model(cfg), batch)

    step_losses = []
    result = train(
        cfg,
        data=(train_frames, val_frames),
        on_event=lambda kind, info: step_losses.append(info["loss"]) if kind == "step" else None,
    )
    assert len(step_losses) == 8 * 8 and len(result.history) == 8
    trained = batch_loss(result.model, batch)
    assert trained < 0.8 * initial, (initial, trained)
    assert np.mean(step_losses[-8:]) < np.mean(step_losses[:8]) - 0.3, step_losses

    # the last checkpoint reloads to exactly the trained model's predictions
    reloaded, meta = load_checkpoint(result.last_checkpoint)
    p_trained = run_model_on_frames(result.model, frames, timesteps=4)
    p_reloaded = run_model_on_frames(reloaded, frames, timesteps=4)
    for a, b in zip(p_trained, p_reloaded):
        np.testing.assert_array_equal(a, b)
    assert batch_loss(reloaded, batch) == trained
    # ... and records how it was made
    assert meta["training"]["config"]["model_overrides"] == SMALL
    assert meta["training"]["epoch"] == 7 and meta["preprocess"]["input_size"] == [32, 32, 2]
    assert reloaded.config.input_hw == (32, 32) and reloaded.config.timesteps == 4

    # the best checkpoint is the epoch with the best validation score, and the metrics files agree
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(8))
    scores = [r["val_clip_acc"] + r["val_stream_500ms"] for r in rows]
    _, best_meta = load_checkpoint(result.best_checkpoint)
    assert best_meta["training"]["epoch"] == int(np.argmax(scores))
    csv_lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,global_step,train_loss") and len(csv_lines) == 9


def test_readout_memory_is_chosen_on_validation_and_written_to_the_best_checkpoint(tmp_path, frames):
    from dvsapp.core.model import load_checkpoint
    from dvsapp.core.train.evaluate import evaluate_frames
    from dvsapp.core.train.readout import DEFAULT_CANDIDATES, checkpoint_score

    train_frames, val_frames = frames[:2], frames[2:]
    seen = []
    result = train(
        small_config(tmp_path / "tuned", val_split="val", epochs=3),
        data=(train_frames, val_frames),
        on_event=lambda kind, info: seen.append(info) if kind == "readout" else None,
    )
    (info,) = seen
    scores = {r["head_decay"]: r["score"] for r in info["table"]}
    assert info["trained"] == 0.5 and set(scores) == set(DEFAULT_CANDIDATES)
    assert scores[info["chosen"]] == max(scores.values())
    best, meta = load_checkpoint(result.best_checkpoint)
    assert best.config.head_decay == info["chosen"]
    rep = evaluate_frames(best, val_frames, timesteps=4, class_names=best.config.class_names)
    assert checkpoint_score(rep) == pytest.approx(scores[info["chosen"]])  # the checkpoint is what was scored
    if info["chosen"] != info["trained"]:
        assert (
            meta["readout"]["head_decay_trained"] == 0.5 and meta["readout"]["head_decay"] == info["chosen"]
        )
    else:
        assert "readout" not in meta
    # opted out: no choice, the trained value stays
    seen.clear()
    off = train(
        small_config(tmp_path / "untuned", val_split="val", epochs=1, tune_readout=False),
        data=(train_frames, val_frames),
        on_event=lambda kind, info: seen.append(info) if kind == "readout" else None,
    )
    assert not seen and load_checkpoint(off.best_checkpoint)[0].config.head_decay == 0.5


class _Interrupted(Exception):
    pass


def test_resume_continues_exactly_where_the_interrupted_run_stopped(tmp_path, frames):
    from dvsapp.core.model import load_checkpoint

    train_frames = frames[:2]
    kw = dict(epochs=4, clips_per_epoch=32)
    straight = train(small_config(tmp_path / "straight", **kw), data=(train_frames, []))

    def stop_before_third_epoch(kind, info):
        if kind == "epoch_start" and info["epoch"] == 2:
            raise _Interrupted

    cut = small_config(tmp_path / "cut", **kw)
    with pytest.raises(_Interrupted):
        train(cut, data=(train_frames, []), on_event=stop_before_third_epoch)
    last = tmp_path / "cut" / "last.safetensors"
    assert (tmp_path / "cut" / "last.optim.safetensors").is_file()
    resumed = train(small_config(tmp_path / "cut", resume=str(last), **kw), data=(train_frames, []))
    assert [h["epoch"] for h in resumed.history] == [2, 3]
    assert [h["global_step"] for h in resumed.history] == [12, 16]
    a, _ = load_checkpoint(straight.last_checkpoint)
    b, _ = load_checkpoint(resumed.last_checkpoint)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
    rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1, 2, 3]


def test_init_fine_tunes_from_a_checkpoint_with_its_recipe_and_a_fresh_schedule(tmp_path, frames):
    from dvsapp.core.model import load_checkpoint

    train_frames = frames[:2]
    first = train(small_config(tmp_path / "first", epochs=2, clips_per_epoch=32), data=(train_frames, []))
    base, base_meta = load_checkpoint(first.last_checkpoint)
    # the overrides apply to the checkpoint's config (the preset named is not used)
    cfg = small_config(
        tmp_path / "tuned",
        init=str(first.last_checkpoint),
        epochs=3,
        clips_per_epoch=32,
        lr=1e-9,
        model_overrides={"head_decay": 0.2},
        preset="sdt-2-256",
    )
    tuned = train(cfg, data=(train_frames, []))
    assert [h["epoch"] for h in tuned.history] == [0, 1, 2]  # a fresh schedule, not a resume
    assert [h["global_step"] for h in tuned.history] == [4, 8, 12]
    model, meta = load_checkpoint(tuned.last_checkpoint)
    assert model.config == base.config.replace(head_decay=0.2)
    assert meta["recipe"] == base_meta["recipe"]
    assert meta["training"]["config"]["init"] == str(first.last_checkpoint)
    # at a vanishing learning rate the weights stay the checkpoint's (a fresh model's would not;
    # batch-norm running statistics move with the data, so parameters only)
    for (name, pa), (_, pb) in zip(base.named_parameters(), model.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)

    with pytest.raises(ConfigError, match="does not fit the weights"):
        train(
            config_with(cfg, out_dir=str(tmp_path / "bad"), model_overrides={"embed_dim": 48}),
            data=(train_frames, []),
        )
    with pytest.raises(ConfigError, match="resume and init exclude each other"):
        config_with(cfg, resume=str(first.last_checkpoint))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be positive"),
        ({"batch_size": -4}, "batch_size must be positive"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"windows_per_clip": 0}, "windows_per_clip must be positive"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        small_config(tmp_path, **changes)


def test_bad_model_or_data_options_raise_config_error_before_training(tmp_path, frames):
    with pytest.raises(ConfigError, match="no model preset 'huge'"):
        train(small_config(tmp_path / "a", preset="huge"), data=(frames[:2], []))
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'"):
        train(small_config(tmp_path / "b", dataset="cifar"))
    with pytest.raises(ConfigError, match="time stretch"):
        train(small_config(tmp_path / "c", time_stretch=(1.5, 0.5), n_train_seeds=1))
    with pytest.raises(ConfigError, match="timesteps long"):  # clips longer than every recording
        train(small_config(tmp_path / "d", windows_per_clip=500), data=(frames[:2], []))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs must be positive"),
        (["--stretch", "fast"], "--stretch must be LOW,HIGH"),
        (["--set", "embed_dim"], "--set takes KEY=VALUE"),
        (["--preset", "huge"], "no model preset 'huge'"),
        (["--dataset", "h5"], "needs --root"),
    ],
)
def test_train_cli_bad_options_exit_2_with_one_line(tmp_path, args, message):
    from typer.testing import CliRunner

    from dvsapp.app.cli import app

    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "o"), "--quiet", *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    lrs = [cosine_lr(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert cosine_lr(100, 100, 1.0, 0.1) == pytest.approx(0.01)


def test_loss_ignores_unlabeled_timesteps():
    logits = torch.zeros(3, 2, 4)
    logits[0, 0, 1] = 5.0
    labels = torch.tensor([[1, -1], [-1, -1], [-1, -1]])
    loss, correct, n = tet_loss(logits, labels)
    assert n == 1 and correct == 1
    assert float(loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[0, :1], labels[0, :1]))
    )
    loss, correct, n = tet_loss(logits, torch.full((3, 2), -1))
    assert n == 0 and float(loss) == 0.0


# --------------------------------------------------------------------------- distributed


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("cuda", "nccl"), ("auto", None)])
def test_process_group_backend_is_gloo_on_cpu_and_nccl_on_cuda(monkeypatch, device, backend):
    import torch.distributed as dist

    from dvsapp.core.train import distributed

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.append(str(dev)))
    for key in distributed.NO_MULTICAST_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = distributed.init_distributed(device)
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1) and not info.is_main
    expected = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    assert calls[-1] == expected
    if expected == "nccl":
        assert info.device == "cuda:1" and calls[0] == "cuda:1"
    else:
        assert info.device == "cpu"
    assert all(os.environ[k] == v for k, v in distributed.NO_MULTICAST_ENV.items())


@pytest.fixture(scope="module")
def exported_h5(tmp_path_factory) -> Path:
    """``dvsapp label export`` of the bundled recordings: gestures.aedat4 -> train, gestures.h5 -> test."""
    out = tmp_path_factory.mktemp("export") / "gestures_dataset.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "label",
            "export",
            "recordings/gestures.aedat4",
            "recordings/gestures.h5",
            "--test",
            "gestures.h5",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "11 train, 3 test" in proc.stdout
    return out


def test_label_export_then_train_on_the_h5_dataset(tmp_path, exported_h5):
    from typer.testing import CliRunner

    from dvsapp.app.cli import app
    from dvsapp.core.model import load_checkpoint

    out = tmp_path / "h5run"
    args = ["train", "--dataset", "h5", "--root", str(exported_h5), "--epochs", "2", "--batch", "4"]
    args += ["--clips-per-epoch", "8", "--windows", "2", "--device", "cpu", "--out", str(out), "--quiet"]
    res = CliRunner().invoke(app, args + SMALL_SET)
    assert res.exit_code == 0, res.output + res.stderr
    model, meta = load_checkpoint(out / "best.safetensors")
    assert meta["training"]["config"]["dataset"] == "h5"
    assert meta["training"]["config"]["root"] == str(exported_h5)
    assert model.config.input_hw == (32, 32)
    report = json.loads((out / "test_report.json").read_text())  # the file's "test" groups
    assert report["n_clips"] == 3 and sum(map(sum, report["confusion"])) == 3
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and "val_clip_acc" in json.loads(rows[-1])


def test_an_h5_dataset_without_test_groups_needs_no_val(tmp_path):
    from typer.testing import CliRunner

    from dvsapp.app.cli import app

    runner = CliRunner()
    data = tmp_path / "train_only.h5"
    res = runner.invoke(
        app, ["label", "export", str(REPO / "recordings" / "gestures.aedat4"), "--out", str(data)]
    )
    assert res.exit_code == 0 and "11 train, 0 test" in res.stdout, res.output
    args = ["train", "--dataset", "h5", "--root", str(data), "--epochs", "1", "--batch", "4"]
    args += ["--clips-per-epoch", "4", "--windows", "1", "--device", "cpu", "--quiet", *SMALL_SET]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(data) in lines[0] and "no labeled groups in split 'val'" in lines[0]
    res = runner.invoke(app, [*args, "--no-val", "--no-test", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "val_clip_acc" not in json.loads(rows[0])
    assert (tmp_path / "b" / "best.safetensors").is_file() and not (
        tmp_path / "b" / "test_report.json"
    ).exists()


def test_torchrun_two_processes_on_cpu_train_with_gloo_and_only_rank_0_writes(tmp_path, exported_h5):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["benchmarks/train_entry.py", "train", "--dataset", "h5", "--root", str(exported_h5)]
    cmd += ["--epochs", "2", "--batch", "4", "--clips-per-epoch", "16", "--windows", "2", "--no-test"]
    cmd += ["--device", "cpu", "--out", str(out), *SMALL_SET]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # rank 0 alone writes: one line per epoch (not two), and nothing else in the folder
    assert sorted(p.name for p in out.iterdir()) == [
        "best.safetensors",
        "last.optim.safetensors",
        "last.safetensors",
        "metrics.csv",
        "metrics.jsonl",
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(r["world_size"] == 2 for r in rows)
    # 16 clips per epoch shared by 2 ranks at 4 per step: 2 steps per epoch, not 4
    assert [r["global_step"] for r in rows] == [2, 4]
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert proc.stderr.count("epoch 2:") == 1  # progress is printed by rank 0 only


def test_optimizer_state_resumes_in_the_layout_of_channels_last_weights(tmp_path):
    """On CUDA the weights are channels-last; the saved (contiguous) moments come back in
    their parameter's layout, with their values, so the elementwise update lines up."""
    from dvsapp.core.model import build_model, preset
    from dvsapp.core.train.trainer import load_optimizer, save_optimizer

    def make():
        torch.manual_seed(0)
        model = build_model(preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=16, heads=4, depth=1))
        model.to(memory_format=torch.channels_last)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    model, opt = make()
    conv = model.sps.stages[1].conv.weight
    assert not conv.is_contiguous()  # a channels-last 4-D weight
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    save_optimizer(tmp_path / "o.safetensors", opt, epoch=3, global_step=7)

    model2, opt2 = make()
    assert load_optimizer(tmp_path / "o.safetensors", opt2, "cpu") == (3, 7)
    for p, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        for name in ("exp_avg", "exp_avg_sq"):
            a, b = opt.state[p][name], opt2.state[p2][name]
            assert b.stride() == p2.stride()
            assert torch.equal(a, b)
    assert opt2.state[model2.sps.stages[1].conv.weight]["exp_avg"].abs().sum() > 0
