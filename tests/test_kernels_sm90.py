"""The Triton kernels compiled for the GPUs training runs on (sm_90: H100 / H200), without one.

Triton compiles to a cubin on the CPU (its own ``ptxas``); the interpreter tests check what the
kernels compute, this checks that they build for the real target at the model's shapes and
that the ones whose registers are tight do not spill to local memory (``cuobjdump
-res-usage``: a stack means spills, which would make a memory-bound kernel slow).
``.ci/kernels`` runs it with Triton installed and the interpreter off; elsewhere it skips.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("Triton's interpreter is on: nothing is compiled", allow_module_level=True)

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from dvsapp.core.model import conv_wgrad, fused_lif, fused_lif_pool, fused_pool  # noqa: E402

_TARGET = GPUTarget("cuda", 90, 32)
_F32, _I32 = "*fp32", "i32"


def _compile(fn, types: dict, constants: dict, num_warps: int = 4):
    """The kernel compiled for sm_90 with these argument types and compile-time constants."""
    signature, constexprs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
            constexprs[(i,)] = constants[name]
        else:
            signature[name] = types[name]
    return triton.compile(
        ASTSource(fn, signature, constexprs), target=_TARGET, options={"num_warps": num_warps}
    )


def _stack_bytes(kernel, tmp_path) -> int:
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):
        pytest.skip("Triton's cuobjdump is not there")
    path = tmp_path / "kernel.cubin"
    path.write_bytes(kernel.asm["cubin"])
    usage = subprocess.run(
        [cuobjdump, "-res-usage", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(re.search(r"STACK:(\d+)", usage).group(1))


@pytest.fixture(scope="module", autouse=True)
def _kernels():
    ok = fused_lif.load_kernels() and fused_pool.load_kernels() and fused_lif_pool.load_kernels()
    if not (ok and conv_wgrad.load_kernels()):
        pytest.skip("the kernels are turned off (DVSAPP_FUSED_LIF=0)")


# sdt-2-256's stage 1 at batch 16: 64 channels at 128 x 128, pooled to 64 x 64
_STAGE1 = dict(C=64, H=128, W=128, OH=64, OW=64)


@pytest.mark.parametrize("store_z", [True, False])
def test_lif_forward_builds(store_z):
    types = dict(x_ptr=_F32, v0_ptr=_F32, z_ptr=_F32, h_ptr=_F32, vt_ptr=_F32, n=_I32, steps=_I32)
    types |= dict(gain="fp32", v_leak="fp32", v_th="fp32", v_reset="fp32")
    kernel = _compile(fused_lif._kernels[0], types, dict(SAVE=True, BLOCK=fused_lif._BLOCK, STORE_Z=store_z))
    assert kernel.asm["cubin"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_pooling_kernels_build(channels_last, tmp_path):
    fwd, bwd = fused_pool._kernels
    for spikes in (False, True):
        types = dict(
            x_ptr=_F32, y_ptr=_F32, code_ptr="*i8", sxn=_I32, sxc=_I32, sxh=_I32, sxw=_I32, v_th="fp32"
        )
        assert _compile(fwd, types, _STAGE1 | dict(CL=channels_last, BLOCK=1024, SPIKES=spikes)).asm["cubin"]
    kernel = _compile(
        bwd, dict(gy_ptr=_F32, code_ptr="*i8", gx_ptr=_F32), _STAGE1 | dict(CL=channels_last, BLOCK=1024)
    )
    assert _stack_bytes(kernel, tmp_path) == 0


@pytest.mark.parametrize("channels_last", [True, False])
def test_lif_pool_backward_builds_without_spills(channels_last, tmp_path):
    types = dict(gy_ptr=_F32, code_ptr="*i8", h_ptr=_F32, gvt_ptr=_F32, gx_ptr=_F32, gv0_ptr=_F32)
    types |= dict(steps=_I32, n=_I32, n_out=_I32, gain="fp32", v_th="fp32", alpha="fp32")
    constants = _STAGE1 | dict(CL=channels_last, BLOCK=fused_lif_pool._BLOCK)
    assert _stack_bytes(_compile(fused_lif_pool._kernel, types, constants), tmp_path) == 0


@pytest.mark.parametrize(("ci", "co", "hw"), [(32, 64, 128), (128, 256, 32), (256, 256, 16)])
def test_weight_gradient_builds_on_wgmma_without_spills(ci, co, hw, tmp_path):
    types = dict(x_ptr=_F32, gy_ptr=_F32, part_ptr=_F32, P=_I32, chunk=_I32)
    constants = dict(H=hw, W=hw, CI=ci, CO=co, BO=conv_wgrad._BO, BC=conv_wgrad._BC, BP=conv_wgrad._BP)
    kernel = _compile(conv_wgrad._kernel, types, constants, num_warps=conv_wgrad._WARPS)
    assert _stack_bytes(kernel, tmp_path) == 0
    assert "wgmma" in kernel.asm["ptx"]  # Hopper's warp-group products (TF32)
