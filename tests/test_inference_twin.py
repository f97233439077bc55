"""The inference twin: batch norms folded, token projections as matrix products, separable pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_model import VARIANTS, activate, event_frames, small_config
from torch import nn

from dvsapp.core.model import TapRecorder, build_model, bundled_checkpoint, load_checkpoint
from dvsapp.core.model.inference import Pointwise, SpikeMaxPool, TwinCache, inference_twin


def trained_like(cfg, seed: int = 1) -> nn.Module:
    """A fresh model whose batch norms carry statistics (means too), in float64, eval mode."""
    model = activate(build_model(cfg), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.running_mean.data = 0.2 * torch.randn(mod.num_features, generator=g)
    return model.double().eval()


def run_windows(model, frames, size):
    state, out = None, []
    with torch.inference_mode():
        for i in range(0, frames.shape[0], size):
            logits, state = model(frames[i : i + size], state)
            out.append(logits)
    return torch.cat(out), state


@pytest.mark.parametrize(
    "overrides",
    [{"attention": v} for v in VARIANTS]
    + [
        {"pooling": "spool"},
        # the last stage pools its membrane (real values, negatives too) before the neuron
        {"pooling_stages": "0101"},
        {"temporal_kernel": 3},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_twin_gives_the_models_spikes_and_logits(overrides):
    model = trained_like(small_config(**overrides))
    twin = inference_twin(model)
    frames = event_frames((12, 2, 2, 16, 16), seed=3, dtype=torch.float64)
    want, want_state = run_windows(model, frames, 4)
    got, got_state = run_windows(twin, frames, 4)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    fired = 0.0
    for a, b in zip(got_state.neurons, want_state.neurons, strict=True):
        # a spike that went the other way would leave a membrane off by about the threshold
        torch.testing.assert_close(a.v, b.v, rtol=1e-9, atol=1e-9)
    taps_model, taps_twin = TapRecorder(), TapRecorder()
    with torch.inference_mode():
        model(frames[:4], taps=taps_model)
        twin(frames[:4], taps=taps_twin)
    assert taps_twin.rates == taps_model.rates
    fired = np.mean(list(taps_model.rates.values()))
    assert 0.02 < fired < 0.9  # the comparison covered firing neurons


def test_twin_is_folded_and_leaves_the_model_alone():
    model = trained_like(small_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = inference_twin(model)
    kinds = {type(m) for m in twin.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert not any(issubclass(k, nn.Conv1d) for k in kinds)
    assert Pointwise in kinds and SpikeMaxPool in kinds
    assert all(b.attn.qkv.weight.shape == (48, 16) for b in twin.blocks)
    assert not any(p.requires_grad for p in twin.parameters())
    # the original keeps its modules and values
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(b.attn.qkv is None for b in model.blocks)


def test_twin_split_equals_one_call_bit_for_bit():
    twin = inference_twin(trained_like(small_config(), seed=4))
    frames = event_frames((10, 1, 2, 16, 16), seed=5, dtype=torch.float64)
    whole, whole_state = run_windows(twin, frames, 10)
    split, split_state = run_windows(twin, frames, 3)
    assert torch.equal(whole, split)
    assert all(torch.equal(a.v, b.v) for a, b in zip(whole_state.neurons, split_state.neurons, strict=True))


@pytest.mark.parametrize("shape", [(2, 16, 64, 64), (3, 5, 7, 9), (1, 2, 8, 5), (1, 1, 1, 1), (2, 3, 2, 3)])
def test_spike_max_pool_equals_max_pool2d(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g)  # negatives too: no padding value is assumed
    assert torch.equal(SpikeMaxPool()(x), F.max_pool2d(x, 3, stride=2, padding=1))
    spikes = (x > 0.8).float()
    assert torch.equal(SpikeMaxPool()(spikes), F.max_pool2d(spikes, 3, stride=2, padding=1))


def test_twin_cache_follows_the_models_tensors():
    model = trained_like(small_config(), seed=6)
    cache = TwinCache()
    first = cache.get(model)
    assert cache.get(model) is first
    frames = event_frames((2, 1, 2, 16, 16), seed=7, dtype=torch.float64)
    with torch.no_grad():  # an in-place update, as an optimizer step or load_state_dict makes
        model.sps.stages[1].bn.running_mean.add_(0.5)
    second = cache.get(model)
    assert second is not first
    with torch.inference_mode():
        torch.testing.assert_close(second(frames)[0], model(frames)[0], rtol=1e-10, atol=1e-10)
        assert not torch.allclose(first(frames)[0], model(frames)[0])
    model.float()
    third = cache.get(model)
    assert third is not second and next(third.parameters()).dtype == torch.float32
    other = trained_like(small_config(), seed=6)
    assert cache.get(other) is not third


def test_streaming_classifier_runs_the_twin_on_cpu():
    from dvsapp.core.classify import StreamingClassifier

    model, _ = load_checkpoint(bundled_checkpoint())
    clf = StreamingClassifier(model)
    runner = clf.runner
    assert runner is not model and runner is clf.runner
    assert not any(isinstance(m, nn.BatchNorm2d) for m in runner.modules())
    clf.inference_twin = False
    assert clf.runner is model
