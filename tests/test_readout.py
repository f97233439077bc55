"""The readout's memory (``head_decay``) can be changed after training, and ``dvsapp train`` chooses it."""

from __future__ import annotations

import pytest
import torch

from dvsapp.core.model import build_model, preset
from dvsapp.core.train.readout import DEFAULT_CANDIDATES, checkpoint_score, choose_head_decay, with_head_decay


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_another_head_decay_is_a_moving_average_of_the_same_logits():
    torch.manual_seed(0)
    model = build_model(preset("tiny", input_hw=(32, 32), embed_dim=32, heads=2)).eval()
    x = (torch.rand(12, 2, 2, 32, 32) < 0.08).float()
    with torch.no_grad():
        raw, _ = with_head_decay(model, 1.0)(x)  # a = 1: the per-step logits themselves
        assert raw.abs().sum() > 0
        for a in (0.5, 0.1):
            out, _ = with_head_decay(model, a)(x)
            v = torch.zeros_like(raw[0])
            for t in range(len(raw)):
                v = (1 - a) * v + a * raw[t]
                torch.testing.assert_close(out[t], v, rtol=1e-5, atol=1e-6)
    # the copy keeps the weights and leaves the original alone
    assert model.config.head_decay == 0.5
    copy = with_head_decay(model, 0.1)
    for (ka, va), (kb, vb) in zip(model.state_dict().items(), copy.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_choose_head_decay_keeps_the_trained_value_unless_another_scores_higher():
    from dvsapp.core.model import bundled_checkpoint, load_checkpoint
    from dvsapp.core.recipe import recipe_from_metadata
    from dvsapp.core.train.datasets import bin_recording, synthetic_recording

    model, meta = load_checkpoint(bundled_checkpoint())
    recipe = recipe_from_metadata(meta, config=model.config)
    frames = [bin_recording(synthetic_recording(seed, 4), recipe) for seed in (100_000, 100_001)]
    kw = dict(timesteps=recipe.timesteps, class_names=model.config.class_names)
    chosen, table = choose_head_decay(model, frames, **kw)
    scores = {r["head_decay"]: r["score"] for r in table}
    assert table[0]["head_decay"] == model.config.head_decay  # the trained value is scored first
    assert set(scores) == {model.config.head_decay, *DEFAULT_CANDIDATES}
    assert scores[chosen] == max(scores.values())
    if chosen != model.config.head_decay:
        assert scores[chosen] > scores[model.config.head_decay]
    # only the trained value on offer: it is kept
    assert choose_head_decay(model, frames, candidates=(), **kw)[0] == model.config.head_decay
    assert checkpoint_score(type("R", (), {"clip_accuracy": 0.5, "stream_accuracy": {500: 0.25}})) == 0.75


def test_readout_bank_features_are_the_sum_of_one_leaky_integrator_per_map():
    """benchmarks/readout_bank.py: ``W @ features`` equals K Norse integrators, each on its own linear map."""
    import sys
    from pathlib import Path

    import numpy as np

    from dvsapp.core.model.neurons import LIState, head_integrator

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from readout_bank import bank_features

    rng = np.random.default_rng(0)
    spikes = [(rng.random((30, 6)) < 0.3).astype(np.float32), (rng.random((7, 6)) < 0.5).astype(np.float32)]
    decays = [0.5, 0.1, 0.03]
    n_cls = 4
    w = rng.normal(size=(n_cls, len(decays) * 7)).astype(np.float32)  # per decay: 6 spike weights + 1 bias
    feats = bank_features(spikes, decays)
    assert [f.shape for f in feats] == [(30, 21), (7, 21)]
    for s, f in zip(spikes, feats):
        expected = torch.zeros(len(s), n_cls)
        for k, a in enumerate(decays):
            wk = torch.from_numpy(w[:, 7 * k : 7 * k + 6])
            bk = torch.from_numpy(w[:, 7 * k + 6])
            li = head_integrator(a)
            state = LIState(v=torch.zeros(1, n_cls), i=torch.zeros(1, n_cls))
            for t in range(len(s)):
                out, state = li((torch.from_numpy(s[t]) @ wk.T + bk)[None], state)
                expected[t] += out[0]
        torch.testing.assert_close(torch.from_numpy(f @ w.T), expected, rtol=1e-4, atol=1e-5)
