"""Training loop: streaming clips, truncated BPTT across windows, AdamW + cosine, DDP.

One optimisation step takes a batch of ``B`` random clips of ``L`` windows of
``T`` timesteps (:class:`dvsapp.core.train.datasets.ClipBank`).  The model runs the
windows in order with its state carried; the state is detached only every
``bptt_windows`` windows, where truncated backpropagation through time ends, so
gradients reach back across windows.  A share ``burn_in_p`` of the batches starts
mid-stream: ``burn_in_windows`` earlier windows of the same stream run first
without gradients, so the model learns from carried state as well as from rest.
Each window's loss is the cross entropy averaged over its labeled timesteps
(TET-style per-timestep loss).  ``reverse_p`` plays clips backwards (time reversed,
polarity swapped, circle direction flipped: :mod:`dvsapp.core.train.reverse`).
On CUDA the model runs under ``torch.compile`` (``compile=False`` opts out) with
bf16 autocast, its weights channels-last.

Works with any model ``model(frames [T, B, P, H, W], state) -> (logits [T, B, C], state)``
whose state has ``.detach()`` (or is a nest of tensors).  Under ``torchrun`` the
model is wrapped in DistributedDataParallel; rank 0 alone validates, writes
checkpoints (``last.safetensors`` every epoch, ``best.safetensors`` on the best
validation score) and the metrics (``metrics.jsonl`` and ``metrics.csv``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dvsapp.core.errors import CheckpointError, ConfigError
from dvsapp.core.gestures import GESTURE_CLASSES
from dvsapp.core.recipe import InputRecipe
from dvsapp.core.train.datasets import (
    Augment,
    ClipBank,
    FrameRecording,
    build_frames,
    load_frames_h5,
    save_frames_h5,
)
from dvsapp.core.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from dvsapp.core.train.evaluate import EvalReport, evaluate_frames
from dvsapp.core.train.readout import checkpoint_score, choose_head_decay, with_head_decay
from dvsapp.core.train.reverse import CIRCLE_CLASSES, reverse_batch, reverse_frame_recording

EventCallback = Callable[[str, dict], None]
"""``callback(kind, info)`` with kinds ``data``, ``epoch_start``, ``step``, ``epoch_end``, ``test``, ``done``."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``dvsapp train`` takes (JSON-able; stored in checkpoint metadata).

    Time values are microseconds; ``timesteps``/``step_us``/``attention`` of ``None``
    keep the preset's values.
    """

    dataset: str = "synthetic"
    root: str | None = None
    val_split: str | None = "val"
    test_split: str | None = "test"
    preset: str = "tiny"
    attention: str | None = None
    timesteps: int | None = None
    step_us: int | None = None
    windows_per_clip: int = 4
    bptt_windows: int = 4
    burn_in_windows: int = 0
    burn_in_p: float = 0.5
    reverse_p: float = 0.0
    compile: bool = True
    epochs: int = 10
    batch_size: int = 32
    clips_per_epoch: int = 2048
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    amp: bool = True
    seed: int = 0
    out_dir: str = "runs/train"
    resume: str | None = None
    init: str | None = None
    """Fine-tune: start from this checkpoint's weights, model config and input recipe
    (``model_overrides`` applied to its config), with a fresh optimizer and schedule."""
    device: str = "auto"
    workers: int = 1
    n_train_seeds: int | None = None
    n_val_seeds: int | None = None
    n_test_seeds: int | None = None
    n_gestures: int = 4
    time_stretch: tuple[float, float] = (1.0, 1.0)
    flip_p: float = 0.0
    drop_p: float = 0.0
    noise_rate: float = 0.0
    cache_dir: str | None = None
    max_steps: int | None = None
    eval_batch: int = 32
    eval_chunk_steps: int = 64
    """Timesteps per model call in evaluation (whole windows; the score does not depend on it)."""
    time_limit_s: float | None = None
    model_overrides: dict = field(default_factory=dict)
    tune_readout: bool = True
    """After training, choose ``head_decay`` on the validation split (:mod:`dvsapp.core.train.readout`)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "clips_per_epoch", "windows_per_clip", "bptt_windows"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.resume and self.init:
            raise ConfigError("resume and init exclude each other: resume continues a run, init starts one")
        if self.burn_in_windows < 0:
            raise ConfigError(f"burn_in_windows must be >= 0, got {self.burn_in_windows}")
        for name in ("burn_in_p", "reverse_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        object.__setattr__(self, "time_stretch", tuple(float(v) for v in self.time_stretch))

    @property
    def augment(self) -> Augment:
        return Augment(flip_p=self.flip_p, drop_p=self.drop_p, noise_rate=self.noise_rate)


@dataclass
class TrainResult:
    """What a training run produced (rank 0; other ranks get the same paths)."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict] = field(default_factory=list)
    best_score: float = float("nan")
    test_report: EvalReport | None = None
    model: object | None = field(default=None, repr=False)
    """The trained model as it is after the last step (unwrapped from DDP; every rank)."""


# ------------------------------------------------------------------------------ pieces


def tet_loss(logits, labels):
    """Cross entropy averaged over every labeled timestep.

    Parameters
    ----------
    logits : ``[T, B, C]`` float tensor
    labels : ``[T, B]`` int64 tensor, ``-1`` for timesteps outside any gesture

    Returns
    -------
    (loss, n_correct, n_labeled): a scalar tensor (0 when nothing is labeled) and two ints.
    """
    import torch
    import torch.nn.functional as F

    flat = logits.reshape(-1, logits.shape[-1]).float()
    y = labels.reshape(-1)
    valid = y >= 0
    n = int(valid.sum())
    if n == 0:
        return flat.sum() * 0.0, 0, 0
    loss = F.cross_entropy(flat, y, ignore_index=-1, reduction="sum") / n
    with torch.no_grad():
        correct = int((flat.argmax(-1)[valid] == y[valid]).sum())
    return loss, correct, n


def detach_state(state):
    """``state.detach()`` when the state has it, else detach every tensor of a nest."""
    import torch

    if state is None:
        return None
    if hasattr(state, "detach"):
        return state.detach()
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def circle_accuracy(report) -> float:
    """Clip accuracy over the arm-circle classes alone (the classes only motion order tells apart)."""
    conf = np.asarray(report.confusion)
    idx = [c for c in CIRCLE_CLASSES if c < len(conf)]
    support = conf[idx].sum()
    return float(conf[idx, idx].sum() / support) if support else float("nan")


def cosine_lr(step: int, total: int, base_lr: float, warmup_frac: float) -> float:
    """Linear warm-up over ``warmup_frac`` of the steps, then cosine decay to 1% of ``base_lr``."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base_lr * (step + 1) / warm
    prog = min(1.0, (step - warm) / max(1, total - warm))
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * prog)))


def save_optimizer(path: Path, optimizer, *, epoch: int, global_step: int) -> None:
    """Optimizer state as safetensors (tensors) + JSON metadata (param groups, counters)."""
    import torch
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    meta = {
        "param_groups": sd["param_groups"],
        "scalars": scalars,
        "epoch": epoch,
        "global_step": global_step,
    }
    save_file(tensors, str(path), metadata={"optimizer": json.dumps(meta)})


def load_optimizer(path: Path, optimizer, device) -> tuple[int, int]:
    """Restore :func:`save_optimizer` output; returns ``(epoch, global_step)``."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads(fh.metadata()["optimizer"])
            state: dict[int, dict] = {}
            for key in fh.keys():
                pid, name = key.split(".", 1)
                state.setdefault(int(pid), {})[name] = fh.get_tensor(key).to(device)
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read the optimizer state ({exc})", path=path) from None
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for st in state.values():  # AdamW keeps its step counter on the CPU
        if "step" in st and hasattr(st["step"], "cpu"):
            st["step"] = st["step"].cpu()
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # the moments are stored contiguous: give them their parameter's layout (channels-last on CUDA)
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, v in optimizer.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    optimizer.state[p][name] = torch.empty_like(p, dtype=v.dtype).copy_(v)
    return int(meta["epoch"]), int(meta["global_step"])


def optimizer_path(checkpoint: Path) -> Path:
    """``last.safetensors`` -> ``last.optim.safetensors``."""
    return checkpoint.with_name(checkpoint.stem + ".optim.safetensors")


def build_model(cfg: TrainConfig):
    """A fresh :class:`dvsapp.core.model.SpikingTransformer` from the preset and the overrides."""
    from dvsapp.core.model import SpikingTransformer, preset

    overrides = {
        k: v
        for k, v in (("attention", cfg.attention), ("timesteps", cfg.timesteps), ("step_us", cfg.step_us))
        if v is not None
    }
    overrides.update(cfg.model_overrides)
    return SpikingTransformer(preset(cfg.preset, **overrides))


def init_model(cfg: TrainConfig):
    """The model and input recipe a fine-tune (``cfg.init``) starts from.

    The checkpoint's config with ``cfg.model_overrides`` applied; its weights must fit
    that config exactly (an override that changes a shape is a ``ConfigError``).  The
    recipe is the checkpoint's, so the fine-tune sees the input its weights were made for.
    """
    from dvsapp.core.model import SpikingTransformer
    from dvsapp.core.recipe import load_with_recipe

    base, _, pre = load_with_recipe(cfg.init)
    if not cfg.model_overrides:
        return base, pre
    model = SpikingTransformer(base.config.replace(**cfg.model_overrides))
    try:
        model.load_state_dict(base.state_dict(), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(
            f"--set {cfg.model_overrides} does not fit the weights of {cfg.init}: {first}"
        ) from None
    if (model.config.timesteps, model.config.step_us) != (pre.timesteps, pre.step_us):
        pre = replace(pre, timesteps=model.config.timesteps, step_us=model.config.step_us)
    return model, pre


def preprocess_for(model_config) -> InputRecipe:
    """The :class:`~dvsapp.core.recipe.InputRecipe` a model is trained with: its config's input size,
    ``step_us`` and ``timesteps``, counts clipped at 255, no filter (from any sensor)."""
    return InputRecipe.for_model_config(model_config)


def checkpoint_metadata(
    cfg: TrainConfig, pre: InputRecipe, *, epoch: int, metrics: dict, command: str | None
) -> dict:
    """What every checkpoint records about how it was made; ``"recipe"`` is how its input is made."""
    return {
        "recipe": pre.to_dict(),
        # a mirror for readers of the old key; loading reads "recipe" (dvsapp.core.recipe)
        "preprocess": {"input_size": list(pre.input_size), "step_us": pre.step_us, "n_steps": pre.timesteps},
        "training": {
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "epoch": epoch,
            "metrics": metrics,
            "command": command,
        },
    }


# ------------------------------------------------------------------------------ data


def _frames(
    cfg: TrainConfig, split: str, pre: InputRecipe, n_seeds: int | None, info: DistInfo
) -> list[FrameRecording]:
    """Binned recordings of one split, from the cache when there is one (rank 0 builds it)."""
    key = f"{cfg.dataset}-{split}-{n_seeds}-{cfg.n_gestures}-{pre.input_size[0]}x{pre.input_size[1]}-{pre.step_us}us"
    key += "-" + hashlib.sha1(pre.to_json().encode()).hexdigest()[:10]  # clip, filters, spatial rule
    if split == "train":
        key += f"-stretch{cfg.time_stretch[0]:g}-{cfg.time_stretch[1]:g}-seed{cfg.seed}"
    opts = dict(
        workers=max(1, cfg.workers),
        n_seeds=n_seeds,
        n_gestures=cfg.n_gestures,
        time_stretch=cfg.time_stretch if split == "train" else (1.0, 1.0),
        seed=cfg.seed,
    )
    if cfg.cache_dir is None:
        return build_frames(cfg.dataset, cfg.root, split, pre, **opts)
    path = Path(cfg.cache_dir) / f"{key}.h5"
    if info.is_main and not path.is_file():
        save_frames_h5(path, build_frames(cfg.dataset, cfg.root, split, pre, **opts), attrs={"key": key})
    barrier(info)
    return load_frames_h5(path)[0]


# ------------------------------------------------------------------------------ loop


def train(
    cfg: TrainConfig,
    *,
    on_event: EventCallback | None = None,
    command: str | None = None,
    data: tuple[list[FrameRecording], list[FrameRecording]] | None = None,
) -> TrainResult:
    """Train (or resume) a model as ``cfg`` says; returns the checkpoints and the history.

    ``data`` = ``(train, val)`` binned recordings replaces loading ``cfg.dataset``
    (tests, notebooks); they must be binned at the model's input size and step.

    Raises
    ------
    ConfigError, CheckpointError, EventFileError, LabelError
        for bad options, an unreadable checkpoint to resume, or bad data.
    """
    import torch

    from dvsapp.core.model import load_checkpoint, save_checkpoint

    emit = on_event or (lambda kind, info: None)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, info, emit, command, data, torch, load_checkpoint, save_checkpoint)
    finally:
        shutdown(info)


def _train(cfg, info: DistInfo, emit, command, data, torch, load_checkpoint, save_checkpoint) -> TrainResult:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    out = Path(cfg.out_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + info.rank)
    start_epoch, global_step = 0, 0
    best_score = -math.inf
    history: list[dict] = []

    # ---- model (fresh or resumed)
    if cfg.resume:
        from dvsapp.core.recipe import load_with_recipe

        model, meta, pre = load_with_recipe(cfg.resume)  # train on as it was trained
        resumed = meta.get("training", {}) if isinstance(meta, dict) else {}
        best_score = float(resumed.get("metrics", {}).get("best_score", -math.inf))
    elif cfg.init:
        model, pre = init_model(cfg)
    else:
        model = build_model(cfg)
        pre = preprocess_for(model.config)
    mcfg = model.config
    T, L, W = mcfg.timesteps, cfg.windows_per_clip, cfg.burn_in_windows
    class_names = tuple(mcfg.class_names)

    # ---- data (before CUDA work, so worker processes may fork)
    t_data = time.perf_counter()
    if data is not None:
        train_frames, val_frames = list(data[0]), list(data[1])
    else:
        train_frames = _frames(cfg, "train", pre, cfg.n_train_seeds, info)
        val_frames = _frames(cfg, cfg.val_split, pre, cfg.n_val_seeds, info) if cfg.val_split else []
    bank = ClipBank(train_frames, (W + L) * T, device=info.device)
    emit(
        "data",
        {
            "train_recordings": len(train_frames),
            "train_steps": int(sum(r.n_steps for r in train_frames)),
            "val_recordings": len(val_frames),
            "labeled_steps": bank.n_labeled_steps,
            "data_s": time.perf_counter() - t_data,
        },
    )

    model.to(info.device)
    if info.device.startswith("cuda"):
        # cuDNN's convolutions work channels-last; the neurons (fused LIF) take that layout
        # as it is, so no tensor is transposed between them
        model.to(memory_format=torch.channels_last)
    reversible = cfg.reverse_p > 0 and tuple(class_names) == tuple(GESTURE_CLASSES)
    if cfg.reverse_p > 0 and not reversible:
        raise ConfigError("reverse_p needs the DVS Gesture classes (their circles flip direction)")
    net = (
        DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.startswith("cuda") else None
        )
        if info.distributed
        else model
    )
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        fused=info.device.startswith("cuda") or None,  # one kernel for the whole update on the GPU
    )
    if cfg.resume and optimizer_path(Path(cfg.resume)).is_file():
        done_epoch, global_step = load_optimizer(optimizer_path(Path(cfg.resume)), optimizer, info.device)
        start_epoch = done_epoch + 1

    per_rank = cfg.clips_per_epoch // info.world_size
    steps_per_epoch = max(1, per_rank // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    use_amp = cfg.amp and info.device.startswith("cuda")

    # validation every epoch, the readout choice and the held-out test are scored alike
    eval_opts = dict(
        timesteps=T,
        class_names=class_names,
        device=info.device,
        batch_size=cfg.eval_batch,
        amp=use_amp,
        chunk_windows=max(1, cfg.eval_chunk_steps // T),
    )

    def autocast():
        return torch.autocast(device_type=info.device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp)

    # one compiled graph per window: the state is always passed explicitly
    step_net = torch.compile(net) if (cfg.compile and info.device.startswith("cuda")) else net
    gen = torch.Generator(device=info.device)
    gen.manual_seed(cfg.seed * 1000 + info.rank)
    best_path, last_path = out / "best.safetensors", out / "last.safetensors"

    t_train = time.perf_counter()
    next_epoch_s = 0.0  # the expected cost of one more epoch (training + validation), for the time limit
    for epoch in range(start_epoch, cfg.epochs):
        if global_step >= total_steps:
            break
        if cfg.time_limit_s is not None:
            late = float(time.perf_counter() - t_train + next_epoch_s > cfg.time_limit_s)
            if all_reduce_sum(info, [late])[0] > 0:  # every rank stops at the same epoch
                emit("time_limit", {"epoch": epoch, "limit_s": cfg.time_limit_s})
                break
        starts = bank.epoch_starts(cfg.clips_per_epoch, cfg.seed, epoch)
        sampler = DistributedSampler(
            range(len(starts)), num_replicas=info.world_size, rank=info.rank, shuffle=False, drop_last=True
        )
        order = np.fromiter(iter(sampler), dtype=np.int64)
        emit("epoch_start", {"epoch": epoch, "steps": steps_per_epoch, "epochs": cfg.epochs})
        net.train()
        t_epoch = time.perf_counter()
        t_first, epoch_step0 = None, global_step  # after the first step: what follows is free of compilation
        sums = np.zeros(4)  # loss*n, correct, labeled, clips
        for step in range(steps_per_epoch):
            if global_step >= total_steps:
                break
            lr = cosine_lr(global_step, total_steps, cfg.lr, cfg.warmup_frac)
            for g in optimizer.param_groups:
                g["lr"] = lr
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            frames, labels = bank.gather(starts[idx], augment=cfg.augment, generator=gen)
            if reversible:
                flip = torch.rand(len(idx), generator=gen, device=info.device) < cfg.reverse_p
                frames, labels = reverse_batch(frames, labels, flip)
            frames = frames.transpose(0, 1)  # [(W+L)*T, B, P, H, W]
            labels = labels.transpose(0, 1)  # [(W+L)*T, B]
            optimizer.zero_grad(set_to_none=True)
            state = model.initial_state(len(idx), info.device, torch.float32)
            mid_stream = W > 0 and float(torch.rand((), generator=gen, device=info.device)) < cfg.burn_in_p
            if mid_stream:  # earlier windows of the same stream, no gradients: a carried state
                with torch.no_grad(), autocast():
                    for w in range(W):
                        _, state = step_net(frames[w * T : (w + 1) * T], state)
            loss_sum, correct, labeled = 0.0, 0, 0
            seg_loss = None
            for w in range(L):
                lo = (W + w) * T
                last_of_segment = (w + 1) % cfg.bptt_windows == 0 or w == L - 1
                sync = contextlib.nullcontext() if (not info.distributed or w == L - 1) else net.no_sync()
                with sync:
                    with autocast():
                        logits, state = step_net(frames[lo : lo + T], state)
                    loss, c, n = tet_loss(logits, labels[lo : lo + T])
                    seg_loss = loss / L if seg_loss is None else seg_loss + loss / L
                    if last_of_segment:  # truncated BPTT ends here
                        seg_loss.backward()
                        seg_loss = None
                        state = detach_state(state)
                loss_sum += float(loss.detach()) * n
                correct += c
                labeled += n
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            global_step += 1
            if t_first is None:
                t_first = time.perf_counter()
            sums += (loss_sum, correct, labeled, len(idx))
            if info.is_main:
                elapsed = time.perf_counter() - t_epoch
                emit(
                    "step",
                    {
                        "epoch": epoch,
                        "step": step + 1,
                        "steps": steps_per_epoch,
                        "loss": loss_sum / max(labeled, 1),
                        "acc": correct / max(labeled, 1),
                        "lr": lr,
                        "clips_per_s": sums[3] * info.world_size / max(elapsed, 1e-9),
                    },
                )
        if info.device.startswith("cuda"):
            torch.cuda.synchronize()
        t_end = time.perf_counter()
        epoch_s = t_end - t_epoch
        n_steps = global_step - epoch_step0
        # a first epoch holds the compilation: judge the next one by the steps after the first
        steady_s = (t_end - t_first) * n_steps / (n_steps - 1) if t_first and n_steps > 1 else epoch_s
        tot = all_reduce_sum(info, list(sums))
        metrics = {
            "epoch": epoch,
            "global_step": global_step,
            "train_loss": tot[0] / max(tot[2], 1),
            "train_acc": tot[1] / max(tot[2], 1),
            "lr": lr,
            "epoch_s": epoch_s,
            "clips_per_s": tot[3] / max(epoch_s, 1e-9),
            "timesteps_per_s": tot[3] * L * T / max(epoch_s, 1e-9),
            "world_size": info.world_size,
        }
        t_val = time.perf_counter()
        if info.is_main:
            if val_frames:
                rep = evaluate_frames(model, val_frames, **eval_opts)
                metrics.update(
                    val_clip_acc=rep.clip_accuracy,
                    val_step_acc=rep.step_accuracy,
                    **{f"val_stream_{h}ms": a for h, a in rep.stream_accuracy.items()},
                )
                score = checkpoint_score(rep)
            else:
                score = metrics["train_acc"]
            improved = score > best_score
            best_score = max(best_score, score)
            metrics["best_score"] = best_score
            meta = checkpoint_metadata(cfg, pre, epoch=epoch, metrics=metrics, command=command)
            save_checkpoint(last_path, model, metadata=meta)
            save_optimizer(optimizer_path(last_path), optimizer, epoch=epoch, global_step=global_step)
            if improved:
                save_checkpoint(best_path, model, metadata=meta)
            history.append(metrics)
            _append_metrics(out, metrics)
            emit("epoch_end", {**metrics, "improved": improved})
        barrier(info)
        next_epoch_s = steady_s + (time.perf_counter() - t_val)

    if info.is_main and cfg.tune_readout and val_frames and best_path.is_file():
        best, best_meta = load_checkpoint(best_path, map_location=info.device)
        trained = float(best.config.head_decay)
        chosen, table = choose_head_decay(best, val_frames, **eval_opts)
        if chosen != trained:
            best_meta["readout"] = {"head_decay_trained": trained, "head_decay": chosen, "validation": table}
            save_checkpoint(best_path, with_head_decay(best, chosen), metadata=best_meta)
        emit("readout", {"trained": trained, "chosen": chosen, "table": table})
    barrier(info)

    result = TrainResult(out, best_path, last_path, history, best_score, model=model)
    if info.is_main and cfg.test_split and data is None and best_path.is_file():
        best, _ = load_checkpoint(best_path, map_location="cpu")
        test_frames = _frames(cfg, cfg.test_split, pre, cfg.n_test_seeds, replace(info, rank=0, world_size=1))
        rep = evaluate_frames(
            best.to(info.device),
            test_frames,
            **eval_opts,
            meta={"checkpoint": str(best_path), "dataset": cfg.dataset, "split": cfg.test_split},
        )
        rep.save_json(out / "test_report.json")
        result.test_report = rep
        emit("test", {"report": rep})
        if tuple(class_names) == tuple(GESTURE_CLASSES):  # the same clips played backwards
            rev = evaluate_frames(
                best.to(info.device),
                [reverse_frame_recording(r) for r in test_frames],
                **eval_opts,
                meta={
                    "checkpoint": str(best_path),
                    "dataset": cfg.dataset,
                    "split": f"{cfg.test_split}:reversed",
                },
            )
            rev.save_json(out / "test_reversed_report.json")
            emit(
                "test_reversed",
                {"report": rev, "circles": circle_accuracy(rep), "circles_reversed": circle_accuracy(rev)},
            )
    emit("done", {"best": str(best_path), "last": str(last_path)})
    return result


METRIC_COLUMNS = (
    "epoch",
    "global_step",
    "train_loss",
    "train_acc",
    "val_clip_acc",
    "val_step_acc",
    "val_stream_100ms",
    "val_stream_200ms",
    "val_stream_500ms",
    "val_stream_1000ms",
    "lr",
    "epoch_s",
    "clips_per_s",
    "timesteps_per_s",
    "world_size",
)


def _append_metrics(out: Path, metrics: dict) -> None:
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(metrics) + "\n")
    csv_path = out / "metrics.csv"
    new = not csv_path.is_file()
    with open(csv_path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(metrics)


def config_with(cfg: TrainConfig, **changes) -> TrainConfig:
    """A validated copy of ``cfg`` with ``changes``."""
    return replace(cfg, **changes)


__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "tet_loss",
    "detach_state",
    "cosine_lr",
    "build_model",
    "preprocess_for",
    "checkpoint_metadata",
]
