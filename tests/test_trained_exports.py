"""Models that look like real trained exports (model_zoo.TRAINED_EXPORTS: trained weights,
dead and near-dead channels, explicit asymmetric PADs) take the flagship's fast kernels on
the DSP cores, every layer, and stay bit-exact. Their runs on the emulated M4 and M55 are
in test_firmware's full matrix (test_every_fixture_is_bit_exact_on_the_simd_kernels)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import model_zoo
from conftest import assert_bit_exact
from mnv2gen import ir, quant
from mnv2gen.codegen.lower import lower
from mnv2gen.codegen.render import KERNEL_VARIANTS, Options
from mnv2gen.compiler import compile_model
from mnv2gen.frontend.tflite import load_tflite

EXPORTS = sorted(model_zoo.TRAINED_EXPORTS)
FLAGSHIP = "mnv2_a035_96_c1000"


def stage_kernels(name: str, target: str) -> tuple[list[str], int]:
    """The row kernel of every convolution stage, in the order the generated C names them,
    and how many stages take the 64-bit output stage (params without `scales` or `blocks`)."""
    result = compile_model(model_zoo.get_model(name), Options(target=target))
    slow = 0
    for layer in lower(result.plan, variant=KERNEL_VARIANTS[target]):
        for decl in layer.decls:
            if decl.ctype == "conv_params":
                slow += decl.fields["scales"] is None and decl.fields["blocks"] is None
    return re.findall(r"\.kernel = MNV2_KERNEL_(\w+)", result.files["mnv2_model.c"]), slow


@pytest.mark.parametrize("name", EXPORTS)
def test_exports_look_like_real_ones(name):
    """What makes them exports: explicit PADs (bottom and right) before stride-2 VALID
    depthwise layers, and channels whose right shift is beyond the 32-bit output stage's."""
    graph = load_tflite(model_zoo.get_model(name))
    pads = [op for op in graph.ops if isinstance(op, ir.Pad)]
    assert len(pads) == 4 and {op.padding for op in pads} == {ir.Padding(bottom=1, right=1)}
    readers = [op for op in graph.ops if any(op.input is pad.output for pad in pads)]
    assert all(isinstance(op, ir.DepthwiseConv2D) and op.stride == (2, 2) and op.padding == ir.Padding()
               for op in readers) and len(readers) == 4
    beyond = 0
    for op in graph.ops:
        if isinstance(op, (ir.Conv2D, ir.DepthwiseConv2D)):
            _, shifts = quant.per_channel_multipliers(op.input.scale, op.weights.quant.scale, op.output.scale,
                                                      op.output.shape[-1])
            beyond += int((np.array(shifts) < -quant.MAX_FAST_RIGHT_SHIFT).sum())
    assert beyond >= 17  # the stem's dead channel and one in every expansion


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
@pytest.mark.parametrize("name", EXPORTS)
def test_exports_take_the_flagships_fast_kernels_stage_by_stage(name, target):
    """Dead channels keep no layer off the fast path, and the PADs folded into the
    stride-2 depthwise layers (bottom and right) take the kernels the flagship's SAME
    padding takes."""
    kernels, slow = stage_kernels(name, target)
    assert len(kernels) == 52 and slow == 0, kernels
    assert (kernels, slow) == stage_kernels(FLAGSHIP, target)

@pytest.mark.parametrize("name", [EXPORTS[0], pytest.param(EXPORTS[1], marks=pytest.mark.full)])
def test_exports_are_bit_exact_on_the_host(name, out_dir):
    assert_bit_exact(model_zoo.get_model(name), out_dir, count=20)
