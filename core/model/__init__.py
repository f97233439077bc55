"""Norse spiking transformer for event frames: config, model, state, taps, checkpoints, energy.

Typical use::

    from dvsapp.core.model import preset, build_model
    model = build_model(preset("tiny")).eval()
    logits, state = model(frames)            # frames [T, B, P, H, W]
    logits, state = model(next_frames, state)

    twin = inference_twin(model)             # the same model laid out for gradient-free CPU calls
"""

from dvsapp.core.model.attention import ATTENTIONS
from dvsapp.core.model.checkpoint import bundled_checkpoint, load_checkpoint, save_checkpoint
from dvsapp.core.model.config import PRESETS, ModelConfig, preset
from dvsapp.core.model.energy import E_AC_PJ, E_MAC_PJ, EnergyReport, LayerEnergy, estimate_energy
from dvsapp.core.model.inference import inference_twin
from dvsapp.core.model.network import POOLINGS, ModelState, SpikingTransformer, build_model
from dvsapp.core.model.taps import AttentionOps, TapRecorder

__all__ = [
    "ATTENTIONS",
    "AttentionOps",
    "E_AC_PJ",
    "E_MAC_PJ",
    "EnergyReport",
    "LayerEnergy",
    "ModelConfig",
    "ModelState",
    "POOLINGS",
    "PRESETS",
    "SpikingTransformer",
    "TapRecorder",
    "build_model",
    "bundled_checkpoint",
    "estimate_energy",
    "inference_twin",
    "load_checkpoint",
    "preset",
    "save_checkpoint",
]
