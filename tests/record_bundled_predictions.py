"""Store the bundled recording's predictions through the bundled model (``tests/data/``).

``tests/test_classify.py`` checks that the code reproduces them: a refactor must
change no prediction.  Re-record only when the bundled model itself changes::

    OMP_NUM_THREADS=1 .venv/bin/python tests/record_bundled_predictions.py

It runs what ``dvsapp classify recordings/gestures.aedat4 --json`` runs (a file
replay at speed 0 through the pipeline, torch on one thread).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "recordings" / "gestures.aedat4"
FIXTURE = REPO / "tests" / "data" / "bundled_predictions.json"
DECIMALS = 5


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


def as_rows(predictions) -> list[dict]:
    return [
        {"t": int(p.t_us), "label": p.label, "probs": [round(float(v), DECIMALS) for v in p.probs]}
        for p in predictions
    ]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    predictions, _ = run_bundled()
    data = {
        "recording": "recordings/gestures.aedat4",
        "model_sha256": model_digest(),
        "decimals": DECIMALS,
        "windows": as_rows(predictions),
    }
    text = json.dumps(data, separators=(",", ":"))
    FIXTURE.write_text(text.replace('},{"t"', '},\n{"t"') + "\n", encoding="utf-8")
    print(f"wrote {len(predictions)} predictions to {FIXTURE}")


if __name__ == "__main__":
    main()
