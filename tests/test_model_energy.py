"""Energy estimate: SOPs = T * rate * FLOPs, E_AC / E_MAC, attention-alone ratio."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dvsapp.core.model import E_AC_PJ, E_MAC_PJ, build_model, estimate_energy, preset
from dvsapp.core.model.energy import synaptic_ops


def activated(attention: str):
    cfg = preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=16, heads=2, attention=attention)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.weight.data = 1 + 2 * torch.rand(mod.num_features, generator=g)
            mod.bias.data = 0.6 * torch.rand(mod.num_features, generator=g) - 0.1
            mod.running_var.data.fill_(0.1)
    return model


def frames(t=4, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(t, b, 2, 16, 16, generator=g) < 0.2) * 2).float()


def test_sops_formula_by_hand():
    # a 3x3 conv 4 -> 8 channels on an 8x8 map: 8*8*8 outputs * 4*9 inputs = 18432 MACs per step
    flops = 8 * 8 * 8 * 4 * 9
    assert synaptic_ops(flops, 0.25, 4) == 4 * 0.25 * 18432 == 18432.0
    assert E_AC_PJ == 0.9 and E_MAC_PJ == 4.6


def test_report_layers_match_measured_rates_and_hand_flops():
    model = activated("sdsa")
    x = frames()
    report = estimate_energy(model, x)
    names = [layer.name for layer in report.layers]
    assert names[0] == "sps.stages.0.conv" and "head" in names
    first = report.layers[0]
    # first conv: 2 polarities x k stacked frames -> 2 channels (D/8), 16x16, 3x3 kernel, counted as MAC
    k = model.config.temporal_kernel
    assert first.flops == 16 * 16 * 2 * (2 * k) * 9
    assert first.is_mac and first.ops == 4 * first.flops
    assert first.energy_pj == pytest.approx(E_MAC_PJ * 4 * first.flops)
    # the layer after the first LIF sees exactly that LIF's spikes: rate taken from the taps
    stage1 = report.layers[1]
    assert stage1.name == "sps.stages.1.conv"
    assert stage1.rate > 0
    assert stage1.ops == pytest.approx(4 * stage1.rate * stage1.flops)
    assert stage1.energy_pj == pytest.approx(E_AC_PJ * stage1.ops)
    head = next(layer for layer in report.layers if layer.name == "head")
    assert head.rate == pytest.approx(report.firing_rates["head"])
    assert head.flops == 16 * model.config.num_classes
    # totals are the sums, the ANN reference is all-MAC
    assert report.energy_pj == pytest.approx(
        sum(e.energy_pj for e in (*report.layers, *report.attention_layers))
    )
    assert report.ann_energy_pj == pytest.approx(
        sum(E_MAC_PJ * 4 * e.flops for e in report.layers) + report.attention_ann_energy_pj
    )
    assert report.energy_ratio > 1


def test_attention_alone_ratio():
    x = frames(seed=1)
    sdsa = estimate_energy(activated("sdsa"), x)
    ssa = estimate_energy(activated("ssa"), x)
    n, d, t = 16, 16, 4
    (layer,) = sdsa.attention_layers
    assert layer.ann_energy_pj == pytest.approx(E_MAC_PJ * t * 2 * n * n * d)
    assert sdsa.attention_ratio > 1
    # SDSA's mixing is linear in N, SSA's quadratic: SDSA is cheaper at the same rates
    assert sdsa.attention_energy_pj < ssa.attention_energy_pj
    assert set(sdsa.to_dict()) >= {"energy_uj", "attention_ratio", "layers", "firing_rates"}


def test_single_sample_frames_accepted():
    report = estimate_energy(activated("lrf"), frames(b=1)[:, 0])
    assert report.timesteps == 4 and report.total_sops > 0
