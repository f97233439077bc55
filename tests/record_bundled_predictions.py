"""Store the bundled recording's predictions through the bundled model (``tests/data/``).

``tests/test_classify.py`` checks that the code reproduces them: a refactor must
change no prediction.  Re-record only when the bundled model itself changes::

    OMP_NUM_THREADS=1 .venv/bin/python tests/record_bundled_predictions.py

It runs what ``dvsapp classify recordings/gestures.aedat4 --json`` runs (a file
replay at speed 0 through the pipeline, torch on one thread), with the model in
float64 (:func:`run_stored`).  In float32 the spikes are not a function of the code
alone: some membranes land within one float32 rounding step of the threshold, so the
kernels torch picks for the CPU decide those spikes (the AVX2 and the plain BatchNorm
differ in the last bit) and the kept state carries the difference on for dozens of
windows.  In float64 no membrane comes closer to the threshold than 2e-11 over the
whole recording, far above float64 rounding, so the stored run is the same on any CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"
FIXTURE = REPO / "tests" / "data" / "bundled_predictions.json"
DECIMALS = 5
DTYPE = "float64"  # the model's, in the stored run


def model_digest() -> str:
    """SHA-256 of the bundled checkpoint file (the fixture belongs to this model)."""
    from dvsapp.core.model import bundled_checkpoint

    return hashlib.sha256(Path(bundled_checkpoint()).read_bytes()).hexdigest()


def run_bundled(sinks=()) -> tuple[list, dict]:
    """The bundled recording through the bundled model: ``(predictions, summary)``."""
    from dvsapp.core.pipeline import ListSink, classify_source

    sink = ListSink()
    report = classify_source(str(RECORDING), sinks=[sink, *sinks], speed=0, handle_signals=False)
    return sink.predictions, report.summary


def run_stored() -> list:
    """The stored run: the bundled recording through the pipeline with the bundled model in float64."""
    import torch

    from dvsapp.core.classify import load_classifier
    from dvsapp.core.pipeline import ListSink, Pipeline, run_pipeline
    from dvsapp.core.sources import open_source

    classifier = load_classifier(None)
    classifier.model.to(dtype=getattr(torch, DTYPE))
    sink = ListSink()
    pipeline = Pipeline(open_source(str(RECORDING), speed=0), classifier, sinks=[sink])
    run_pipeline(pipeline, handle_signals=False)
    return sink.predictions


def as_rows(predictions) -> list[dict]:
    return [
        {"t": int(p.t_us), "label": p.label, "probs": [round(float(v), DECIMALS) for v in p.probs]}
        for p in predictions
    ]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    predictions = run_stored()
    data = {
        "recording": "recordings/gestures.aedat4",
        "model_sha256": model_digest(),
        "dtype": DTYPE,
        "decimals": DECIMALS,
        "windows": as_rows(predictions),
    }
    text = json.dumps(data, separators=(",", ":"))
    FIXTURE.write_text(text.replace('},{"t"', '},\n{"t"') + "\n", encoding="utf-8")
    print(f"wrote {len(predictions)} predictions to {FIXTURE}")


if __name__ == "__main__":
    main()
