"""A small model for the fused-kernel tests: the ``tiny`` network at 16x16, one block, with
batch norms set so that every layer's neurons fire, and event frames to feed it."""

from __future__ import annotations

import torch

from dvsapp.core.model import build_model, preset


def firing_model(device, seed):
    """``(config, model)``: the ``tiny`` preset at 16x16 input, D = 16, one block; BN scale 2 and
    shift 0.5 everywhere, so spikes reach every layer (random BN-free weights leave most silent)."""
    torch.manual_seed(seed)
    cfg = preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=16, heads=4, depth=1)
    model = build_model(cfg).to(device)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.weight.fill_(2.0)
                m.bias.fill_(0.5)
    return cfg, model


def event_frames(t, b, device):
    """``[t, b, 2, 16, 16]`` frames: counts of 2 at a fifth of the pixels."""
    return (torch.rand(t, b, 2, 16, 16) < 0.2).float().mul(2).to(device)
