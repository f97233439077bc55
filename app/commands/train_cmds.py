"""``dvsapp train`` and ``dvsapp eval``: train a spiking transformer, score a checkpoint.

- ``train``  streaming-clip training (truncated BPTT, AdamW + cosine, bf16 on GPU);
  the same command under ``torchrun --nproc_per_node=N`` trains with DDP.
- ``eval``   clip / streaming accuracy, confusion matrix (printed + PNG), JSON report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import ProgressBar, ThreadsOpt, apply_threads, handle_errors
from dvsapp.core.atomic import check_writable
from dvsapp.core.errors import ConfigError, OutputExistsError


class _TrainerProgress:
    """Renders the trainer's events (rank 0 only): a :class:`ProgressBar` per epoch, a line per result."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = ProgressBar("train", unit="steps", rate_unit="clips", enabled=not quiet)

    def __enter__(self) -> _TrainerProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def __call__(self, kind: str, info: dict) -> None:
        if self.quiet:
            return
        say = self.bar.print
        if kind == "data":
            say(
                f"data: {info['train_recordings']} training recordings ({info['train_steps']} timesteps, "
                f"{info['labeled_steps']} labeled), {info['val_recordings']} validation recordings, "
                f"prepared in {info['data_s']:.1f} s"
            )
        elif kind == "epoch_start":
            self.bar.restart(f"epoch {info['epoch'] + 1}/{info['epochs']}", info["steps"])
        elif kind == "step":
            self.bar.update(
                info["step"],
                info["steps"],
                rate=info["clips_per_s"],
                note=f"loss {info['loss']:.3f}  acc {info['acc']:.3f}",
            )
        elif kind == "epoch_end":
            self.bar.stop()
            val = ""
            if "val_clip_acc" in info:
                val = f"  val clip {100 * info['val_clip_acc']:.1f}%  val@500ms {100 * info.get('val_stream_500ms', 0):.1f}%"
            mark = "  *best*" if info.get("improved") else ""
            rate = info["clips_per_s"]
            rate_text = f"{rate:.0f}" if rate >= 10 else f"{rate:.2f}"
            say(
                f"epoch {info['epoch'] + 1}: loss {info['train_loss']:.4f}  acc {100 * info['train_acc']:.1f}%{val}  "
                f"{info['epoch_s']:.1f} s  {rate_text} clips/s{mark}"
            )
        elif kind == "test":
            from dvsapp.core.train.evaluate import format_report

            say("held-out test split:")
            say(format_report(info["report"]))
        elif kind == "test_reversed":
            say(
                f"the same clips played backwards: clip accuracy {100 * info['report'].clip_accuracy:.1f}%; "
                f"arm circles {100 * info['circles']:.1f}% forwards, {100 * info['circles_reversed']:.1f}% backwards"
            )
        elif kind == "readout":
            scores = ", ".join(f"{r['head_decay']:g}: {r['score']:.3f}" for r in info["table"])
            verdict = (
                f"head_decay {info['trained']:g} -> {info['chosen']:g} written to the best checkpoint"
                if info["chosen"] != info["trained"]
                else f"head_decay {info['trained']:g} kept"
            )
            say(f"readout on the validation split (clip + 500 ms score; {scores}): {verdict}")
        elif kind == "time_limit":
            say(f"time limit {info['limit_s']:.0f} s reached before epoch {info['epoch'] + 1}")
        elif kind == "done":
            say(f"best checkpoint: {info['best']}\nlast checkpoint: {info['last']}")


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be LOW,HIGH (e.g. 0.8,1.25), got {text!r}") from None
    return lo, hi


def _overrides(items: list[str]) -> dict:
    """``["head_decay=0.2", "embed_dim=128"]`` -> ``{"head_decay": 0.2, "embed_dim": 128}`` (JSON values)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def train_command(
    dataset: Annotated[
        str, typer.Option(help="synthetic | dvsgesture | tonic-dvsgesture | recordings | h5")
    ] = "synthetic",
    root: Annotated[
        Path | None,
        typer.Option(help="Dataset folder (DvsGesture, tonic's DVSGesture), labeled file/folder, or .h5"),
    ] = None,
    preset: Annotated[str, typer.Option(help="Model preset: tiny | small | sdt-2-256")] = "tiny",
    attention: Annotated[str | None, typer.Option(help="Attention variant: ssa | sdsa | lrf | lsssa")] = None,
    timesteps: Annotated[int | None, typer.Option("--timesteps", "-T", help="Timesteps per window")] = None,
    step_us: Annotated[int | None, typer.Option(help="One timestep in microseconds")] = None,
    windows: Annotated[int, typer.Option(help="Windows per training clip (L)")] = 4,
    bptt: Annotated[
        int, typer.Option(help="Windows per truncated-BPTT segment (the state is detached after each)")
    ] = 4,
    burn_in: Annotated[
        int, typer.Option(help="Windows run before a clip without gradients (start mid-stream)")
    ] = 0,
    burn_in_p: Annotated[float, typer.Option(help="Share of batches that start mid-stream")] = 0.5,
    reverse: Annotated[
        float, typer.Option(help="Probability of playing a clip backwards (circle direction flips)")
    ] = 0.0,
    compile_model: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the model on CUDA")
    ] = True,
    epochs: Annotated[int, typer.Option(help="Epochs")] = 10,
    batch: Annotated[int, typer.Option(help="Clips per step (per GPU under torchrun)")] = 32,
    clips_per_epoch: Annotated[
        int, typer.Option(help="Random clips drawn per epoch (all GPUs together)")
    ] = 2048,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine decay)")] = 2e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 0.05,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast on GPU")] = True,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder (checkpoints, metrics.jsonl/csv, reports)")] = Path(
        "runs/train"
    ),
    resume: Annotated[
        Path | None, typer.Option(help="Checkpoint to resume from (its .optim file too)")
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start from this checkpoint's weights, config and input recipe "
            "(--set applies to its config), with a fresh optimizer and schedule"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    workers: Annotated[int, typer.Option(help="Processes for rendering / binning the data")] = 1,
    train_seeds: Annotated[int | None, typer.Option(help="Synthetic: number of training sequences")] = None,
    val_seeds: Annotated[int | None, typer.Option(help="Synthetic: number of validation sequences")] = None,
    test_seeds: Annotated[
        int | None, typer.Option(help="Synthetic: number of held-out test sequences")
    ] = None,
    gestures: Annotated[int, typer.Option(help="Synthetic: gestures per sequence")] = 4,
    stretch: Annotated[str, typer.Option(help="Time-stretch range LOW,HIGH per training recording")] = "1,1",
    flip: Annotated[
        float, typer.Option(help="Probability of a horizontal flip (left/right classes swap)")
    ] = 0.0,
    drop: Annotated[float, typer.Option(help="Fraction of events dropped at random")] = 0.0,
    noise: Annotated[float, typer.Option(help="Spurious events per pixel and timestep")] = 0.0,
    model_set: Annotated[
        list[str] | None,
        typer.Option("--set", help="Model config override KEY=VALUE (repeatable), e.g. head_decay=0.2"),
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="Folder caching binned frames (HDF5)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps")] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="Start no new epoch after this many seconds of training")
    ] = None,
    no_val: Annotated[
        bool, typer.Option("--no-val", help="No validation split (best = best training accuracy)")
    ] = False,
    no_test: Annotated[bool, typer.Option("--no-test", help="Skip the held-out test evaluation")] = False,
    tune_readout: Annotated[
        bool,
        typer.Option(
            "--tune-readout/--no-tune-readout",
            help="After training, choose the readout memory (head_decay) on the validation split",
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Train a spiking transformer; writes best/last checkpoints, metrics and a test report to OUT."""
    from dvsapp.core.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        dataset=dataset,
        root=None if root is None else str(root),
        val_split=None if no_val else "val",
        test_split=None if no_test else "test",
        preset=preset,
        attention=attention,
        timesteps=timesteps,
        step_us=step_us,
        windows_per_clip=windows,
        bptt_windows=bptt,
        burn_in_windows=burn_in,
        burn_in_p=burn_in_p,
        reverse_p=reverse,
        compile=compile_model,
        epochs=epochs,
        batch_size=batch,
        clips_per_epoch=clips_per_epoch,
        lr=lr,
        weight_decay=weight_decay,
        amp=amp,
        seed=seed,
        out_dir=str(out),
        resume=None if resume is None else str(resume),
        init=None if init is None else str(init),
        device=device,
        workers=workers,
        n_train_seeds=train_seeds,
        n_val_seeds=val_seeds,
        n_test_seeds=test_seeds,
        n_gestures=gestures,
        time_stretch=_pair(stretch, "--stretch"),
        flip_p=flip,
        drop_p=drop,
        noise_rate=noise,
        cache_dir=None if cache is None else str(cache),
        tune_readout=tune_readout,
        max_steps=max_steps,
        time_limit_s=time_limit,
        model_overrides=_overrides(model_set or []),
    )
    check_writable(out, folder=True)
    if cache is not None:
        check_writable(cache, folder=True)
    apply_threads(threads)
    main_rank = os.environ.get("RANK", "0") == "0"
    command = "dvsapp " + " ".join(sys.argv[1:]) if sys.argv else None
    with _TrainerProgress(quiet=quiet or not main_rank) as progress:
        train(cfg, on_event=progress, command=command)


def eval_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Labeled recordings (files or folders); none = --dataset")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint, or a shipped model: tiny (the default), small")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="synthetic | dvsgesture | tonic-dvsgesture | h5")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="Dataset folder or file")] = None,
    split: Annotated[str, typer.Option(help="Dataset split")] = "test",
    seeds: Annotated[int | None, typer.Option(help="Synthetic: number of test sequences")] = None,
    gestures: Annotated[int, typer.Option(help="Synthetic: gestures per sequence")] = 4,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
    confusion: Annotated[Path | None, typer.Option(help="Write the confusion matrix PNG here")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
    workers: Annotated[int, typer.Option(help="Processes for rendering / binning")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing report files")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Score a checkpoint: clip and streaming accuracy, latency, per-class precision/recall, confusion."""
    from dvsapp.core.train.evaluate import evaluate_checkpoint, format_report, save_confusion_png

    for target in (report, confusion):  # before the work: a bad output costs a second, not the run
        if target is None:
            continue
        if target.exists() and not force:
            raise OutputExistsError(path=target)
        check_writable(target)
    apply_threads(threads)
    with ProgressBar("evaluating", enabled=not quiet) as bar:
        bar.update(0, None)  # the evaluation reports no progress: a pulsing bar with the time so far
        rep = evaluate_checkpoint(
            checkpoint,
            paths=paths or (),
            dataset=dataset,
            root=root,
            split=split,
            n_seeds=seeds,
            n_gestures=gestures,
            device=device,
            workers=workers,
        )
    typer.echo(format_report(rep))
    if report is not None:
        rep.save_json(report)
        typer.echo(f"report: {report}")
    if confusion is not None:
        save_confusion_png(rep, confusion)
        typer.echo(f"confusion matrix: {confusion}")


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train_command))
    app.command("eval")(handle_errors(eval_command))
