"""``dvsapp label ...``: the labeling tool and its headless helpers.

- ``label edit RECORDING``      open the labeling window (Qt)
- ``label show FILE``           list the segments of a recording or a label CSV
- ``label validate FILE...``    check label CSVs (syntax, overlaps, time range, classes);
  exit 1 when problems are found, 2 when a file cannot be checked
- ``label suggest RECORDING``   segments from activity, classes from a model; a label CSV on stdout
- ``label export REC... --out dataset.h5``  write an HDF5 training dataset
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dvsapp.app.commands._common import ThreadsOpt, apply_threads, handle_errors
from dvsapp.core import labels as core_labels
from dvsapp.core.atomic import check_writable
from dvsapp.core.errors import OutputExistsError

PROBLEMS_FOUND = 1
"""``label validate``'s exit status when labels were checked and have problems (bad input: 2)."""

label_app = typer.Typer(
    help="Label recordings: edit segments, check label CSVs, export HDF5 datasets.",
    no_args_is_help=True,
)


def _fmt_us(t_us: int) -> str:
    return f"{t_us / 1e6:.3f} s"


@label_app.command("edit")
@handle_errors
def edit(
    recording: Annotated[Path, typer.Argument(help="Recording to label (any format dvsapp reads).")],
    recover: Annotated[
        bool | None,
        typer.Option("--recover/--discard", help="Apply (or drop) unsaved autosaved edits without asking."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Checkpoint for the prediction strip, or a shipped model: tiny (the default), small.",
        ),
    ] = None,
) -> None:
    """Open the labeling window on RECORDING (labels are saved beside it as <stem>_labels.csv)."""
    from dvsapp.app.gui.labeler import run_labeler
    from dvsapp.core.io import open_events

    open_events(recording)  # a missing or unreadable file fails here, in one line, before any window
    raise typer.Exit(run_labeler(recording, recover=recover, checkpoint=model))


@label_app.command("show")
@handle_errors
def show(
    path: Annotated[Path, typer.Argument(help="A recording (labels beside or inside it) or a *_labels.csv.")],
) -> None:
    """List the segments of a recording or a DVS Gesture label CSV."""
    found = core_labels.load_label_set(path)
    typer.echo(f"{found.source}: {len(found.segments)} segment(s)")
    typer.echo(f"{'#':>3}  {'class':>5}  {'name':<28} {'start_us':>14} {'end_us':>14} {'duration':>10}")
    for i, seg in enumerate(found.segments, start=1):
        name = found.class_names[seg.class_id] if seg.class_id < len(found.class_names) else "?"
        typer.echo(
            f"{i:>3}  {seg.class_id + 1:>5}  {name:<28} {seg.start_us:>14} {seg.end_us:>14} "
            f"{_fmt_us(seg.duration_us):>10}"
        )


VALIDATE_EXIT = """Exit status: 0 when every file is fine; 1 when the labels were checked and
problems were found (one line per problem on stderr, naming the file and line);
2 when a file could not be checked at all (missing, unreadable, not a label file
or a recording with labels)."""


@label_app.command("validate", epilog=VALIDATE_EXIT)
@handle_errors
def validate(
    paths: Annotated[
        list[Path], typer.Argument(help="Label CSVs, recordings with labels, or folders of them.")
    ],
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="Overlapping segments are fine.")
    ] = False,
    no_range: Annotated[
        bool, typer.Option("--no-range", help="Do not read the recording to check the time range.")
    ] = False,
) -> None:
    """Check label files; print one line per problem; exit 1 when problems are found, 2 on unreadable input."""
    results = core_labels.validate_paths(paths, allow_overlap=allow_overlap, check_range=not no_range)
    for path, problems in results:
        if problems:
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
        else:
            typer.echo(f"{path}: ok")
    n_bad = sum(1 for _, problems in results if problems)
    if n_bad:
        print(f"dvsapp: {n_bad} of {len(results)} file(s) have problems", file=sys.stderr)
        raise typer.Exit(PROBLEMS_FOUND)


@label_app.command("suggest")
@handle_errors
def suggest(
    recording: Annotated[Path, typer.Argument(help="Recording to scan for gestures.")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Checkpoint that names each segment's class, or a shipped model (tiny: the default, small).",
        ),
    ] = None,
    no_model: Annotated[
        bool,
        typer.Option(
            "--no-model", help="Activity only: every segment gets class 11 ('other'), to set by hand."
        ),
    ] = False,
    bin_ms: Annotated[float, typer.Option(help="Event-rate bin (ms).")] = 20.0,
    threshold: Annotated[
        float, typer.Option(help="Activity level between quiet (0) and busy (1), on a log scale.")
    ] = 0.3,
    min_gap_ms: Annotated[
        float, typer.Option(help="Shorter quiet spells do not split a gesture (ms).")
    ] = 250.0,
    min_duration_ms: Annotated[float, typer.Option(help="Shortest suggestion (ms).")] = 500.0,
    write: Annotated[
        bool,
        typer.Option("--write", help="Also write the suggestions as <stem>_labels.csv beside RECORDING."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing label CSV.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Find the gestures of RECORDING by its activity and name them with a model; print a DVS Gesture label CSV.

    The CSV (with its header) goes to stdout, so `dvsapp label suggest REC > REC_labels.csv`
    makes a file that `label validate` and `label edit` read.
    """
    if model is not None and no_model:
        raise typer.BadParameter("give --model or --no-model, not both")
    if write:  # an output that cannot be written fails before the model loads
        target = core_labels.labels_path_for(recording)
        if target.exists() and not force:
            raise OutputExistsError("exists; pass --force to overwrite", path=target)
        check_writable(target)
    classifier = None
    if not no_model:
        from dvsapp.core.classify import load_classifier
        from dvsapp.core.io import open_events

        open_events(recording)  # a bad recording fails in one line before the model loads
        apply_threads(threads)
        classifier = load_classifier(model)
    out = core_labels.suggest_for_recording(
        recording,
        bin_us=round(bin_ms * 1000),
        threshold=threshold,
        min_gap_us=round(min_gap_ms * 1000),
        min_duration_us=round(min_duration_ms * 1000),
        classifier=classifier,
        write=write,
        force=force,
    )
    typer.echo(core_labels.format_labels_csv(out.segments).decode("ascii"), nl=False)
    named = f"classes from {classifier.metadata.get('path', 'the model')}" if out.classified else "class 11"
    print(f"dvsapp: {len(out.segments)} segment(s), {named}", file=sys.stderr)
    if out.written is not None:
        print(f"dvsapp: wrote {out.written}", file=sys.stderr)


@label_app.command("export")
@handle_errors
def export(
    recordings: Annotated[list[Path], typer.Argument(help="Labelled recordings, or folders of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 dataset to write.")],
    mode: Annotated[
        str, typer.Option(help="'segments': one entry per segment; 'recordings': whole recordings.")
    ] = "segments",
    split: Annotated[
        float, typer.Option(help="Fraction of recordings (not segments) put in the test split.")
    ] = 0.0,
    test: Annotated[
        list[str] | None,
        typer.Option("--test", help="Glob on file names that go to the test split (repeatable)."),
    ] = None,
    test_list: Annotated[
        Path | None,
        typer.Option(
            "--test-list", help="File of test file names, one a line (DVS Gesture trials_to_test.txt)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --split draw.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
) -> None:
    """Export recordings and their segments to one HDF5 dataset (read by `dvsapp train --dataset h5`)."""
    patterns = (*(test or ()), *(core_labels.read_name_list(test_list) if test_list else ()))
    summary = core_labels.export_dataset(
        core_labels.expand_recordings(recordings),
        out,
        mode=mode,
        test_fraction=split,
        test_patterns=patterns,
        seed=seed,
        force=force,
    )
    typer.echo(
        f"wrote {summary.path}: {summary.n_groups} {mode} ({summary.n_train} train, {summary.n_test} test), "
        f"{summary.n_events} events from {len(summary.recordings)} recording(s)"
    )


def register(app: typer.Typer) -> None:
    """Add the ``label`` command group."""
    app.add_typer(label_app, name="label")
