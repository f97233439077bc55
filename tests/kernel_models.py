"""What the fused-kernel tests share: where the kernels run, and a small model (the ``tiny``
network at 16x16, one block, with batch norms set so that every layer's neurons fire) with
event frames to feed it."""

from __future__ import annotations

import os

import pytest
import torch

from dvsapp.core.model import build_model, preset


def kernel_device(kernels) -> str:
    """``"cuda"`` where a GPU runs ``kernels`` (``fused_lif`` or ``fused_pool``), ``"cpu"`` where
    Triton's interpreter can run them; else the calling test is skipped."""
    if torch.cuda.is_available() and kernels.load_kernels():
        return "cuda"
    try:
        import triton  # noqa: F401
    except ImportError:
        pytest.skip("no CUDA device and no Triton for its interpreter")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton is installed but TRITON_INTERPRET=1 was not set before it was imported")
    return "cpu"


def firing_model(device, seed, embed_dim=16):
    """``(config, model)``: the ``tiny`` preset at 16x16 input, D = ``embed_dim`` (16), one block;
    BN scale 2 and shift 0.5 everywhere, so spikes reach every layer (random BN-free weights
    leave most silent)."""
    torch.manual_seed(seed)
    cfg = preset("tiny", input_hw=(16, 16), patch_size=4, embed_dim=embed_dim, heads=4, depth=1)
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
