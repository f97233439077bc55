"""Parameter and MAC counts (core/model/count.py): the reference Gesture network and a hand count."""

from __future__ import annotations

import pytest
import torch

from dvsapp.core.model import build_model, preset
from dvsapp.core.model.count import count_model


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sdt_2_256_has_the_reference_networks_parameters_and_macs():
    """BICLab Spike-Driven-Transformer, conf/gesture/2_256_200E_t16.yml: 2.57 M parameters, 1.469 G MACs."""
    cfg = preset("sdt-2-256")
    assert cfg.token_hw == (16, 16) and cfg.pool_pattern == (False, True, True, True)
    assert (cfg.embed_dim, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.timesteps) == (256, 2, 8, 4.0, 16)
    counts = count_model(build_model(cfg))
    assert counts.params == pytest.approx(2.57e6, rel=0.01)
    assert counts.macs == pytest.approx(1.469e9, rel=0.05)


def hand_count(cfg) -> tuple[dict[str, float], dict[str, int]]:
    """MACs per sample-timestep and weights of every conv/linear layer, from the architecture."""
    macs, params = {}, {}
    h, w = cfg.input_hw
    c_in = cfg.in_channels * cfg.temporal_kernel
    for i, (c, pooled) in enumerate(zip(cfg.stage_channels, cfg.pool_pattern)):
        name = f"sps.stages.{i}.conv"
        macs[name] = h * w * c * c_in * 9  # the 3x3 conv runs before the stage's pooling
        params[name] = c * c_in * 9
        if pooled:
            h, w = (h + 1) // 2, (w + 1) // 2
        c_in = c
    d, n = cfg.embed_dim, cfg.n_tokens
    assert (h, w) == cfg.token_hw
    macs["sps.rpe_conv"], params["sps.rpe_conv"] = n * d * d * 9, d * d * 9
    hidden = int(cfg.mlp_ratio * d)
    for b in range(cfg.depth):
        for part, bias in (("q", 0), ("k", 0), ("v", 0), ("proj", d)):
            macs[f"blocks.{b}.attn.{part}.0"], params[f"blocks.{b}.attn.{part}.0"] = n * d * d, d * d + bias
        macs[f"blocks.{b}.mlp.fc1.0"], params[f"blocks.{b}.mlp.fc1.0"] = n * d * hidden, d * hidden + hidden
        macs[f"blocks.{b}.mlp.fc2.0"], params[f"blocks.{b}.mlp.fc2.0"] = n * hidden * d, hidden * d + d
    c = cfg.num_classes
    macs["head"], params["head"] = d * c, d * c + c
    return macs, params


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"input_hw": (48, 32), "patch_size": 4, "pooling_stages": "0101", "embed_dim": 32, "depth": 2},
        {"input_hw": (30, 30), "patch_size": 2, "embed_dim": 16, "mlp_ratio": 2.0, "attention": "lrf"},
    ],
)
def test_counts_equal_a_hand_count_of_the_architecture(overrides):
    cfg = preset("tiny", **overrides)
    model = build_model(cfg)
    counts = count_model(model)
    macs, params = hand_count(cfg)
    assert {row.name: row.macs for row in counts.layers} == macs
    assert {row.name: row.params for row in counts.layers} == params
    assert counts.macs == sum(macs.values())
    assert counts.params == sum(p.numel() for p in model.parameters())
    assert counts.params > sum(params.values())  # batch norms (and anything else learnt) count too


def test_counting_leaves_the_model_as_it_was():
    model = build_model(preset("tiny")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_model(model)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BN statistics updated
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
