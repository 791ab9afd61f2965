"""QUANTIZE float32 -> int8 at a model's input, bit-exact against TFLite's reference kernel
at its edges: halves (x / scale = k + 0.5), the float just below a half, quotients past
int32 and infinities (where TFLite's x86-64 build converts to INT32_MIN and adds the zero
point wrapping), zero points of 0, positive and negative. NaN is not compared: TFLite's
result there is an accident of its build.

The rounding of the generated C, trunc(q + copysign(0.5 - 2^-25, q)), is checked against
roundf on chosen floats here, and on every float of the 2^32 in the full tier, by the
generated C itself."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import model_zoo
import tflite_edit
from conftest import require_tools
from mnv2gen import quant
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import get_board
from mnv2gen.firmware.build import build_firmware
from mnv2gen.firmware.runner import run_qemu
from mnv2gen.host_sim.build import build_host
from mnv2gen.host_sim.runner import run_host
from mnv2gen.verification import oracle

HALF_BELOW = np.float32(0.5) - np.float32(2.0**-25)


def _round_like_the_c(q: np.ndarray) -> np.ndarray:
    """The C's rounding in numpy float32: q + copysign(0.5 - 2^-25, q), truncated."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.trunc(q + np.copysign(HALF_BELOW, q)).astype(np.float64)


def _roundf(q: np.ndarray) -> np.ndarray:
    """roundf, exactly: in double, where |q| + 0.5 is exact for every float32 q."""
    a = np.abs(q.astype(np.float64))
    return np.copysign(np.floor(a + 0.5), q.astype(np.float64))


def _floats(low_bits: int, high_bits: int) -> np.ndarray:
    return np.arange(low_bits, high_bits, dtype=np.uint32).view(np.float32)


def test_rounding_equals_roundf_on_the_hard_floats():
    def binades(low: float, high: float) -> np.ndarray:
        return _floats(np.float32(low).view(np.uint32), np.float32(high).view(np.uint32))

    candidates = [
        binades(2.0**-3, 2.0),  # every float in [1/8, 2): where 0.5 - 2^-25 + q rounds up or not
        binades(2.0**22, 2.0**24),  # where halves end
        _floats(0, 1 << 16),  # subnormals
    ]
    k = np.arange(-(1 << 16), 1 << 16, dtype=np.float64)
    halves = (k + 0.5).astype(np.float32)
    neighbours = [np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf))]
    q = np.concatenate([*candidates, *(-c for c in candidates), halves, *neighbours,
                        np.float32([2.0**31 - 128, -(2.0**31), HALF_BELOW, -HALF_BELOW])])
    mismatch = _round_like_the_c(q) != _roundf(q)
    assert not mismatch.any(), q[mismatch][:10]


def test_constants_follow_the_zero_point():
    assert quant.float_quantize_constants(0.25, 3) == (0.25, 0, 3)
    assert quant.float_quantize_constants(0.25, 0) == (-0.25, -1, 1)


# ---------------------------------------------------------------- the kernel in a model


def _quantize_only(tmp_path, scale: float, zero_point: int):
    """The float-input fixture cut after its QUANTIZE, whose output gets this quantization."""
    model = tflite_edit.load(model_zoo.get_model("mnv2_a035_96_float_in"))
    quantize = model.find_op("QUANTIZE")
    graph = model.graph
    graph.operators = [quantize]
    graph.outputs = list(quantize.outputs)
    graph.tensors[quantize.outputs[0]].quant = tflite_edit.Quant([scale], [zero_point])
    return tflite_edit.save(model, tmp_path / f"quantize_{zero_point}.tflite")


def _edge_inputs(scale: float, shape, seed: int = 0) -> np.ndarray:
    """One input: the edges first, then random values over and past the int8 range."""
    s = np.float32(scale)
    k = np.arange(-140, 140, dtype=np.float32)
    halves = (k + np.float32(0.5)) * s
    huge = np.float32(2.0**31) * s
    edges = np.concatenate([
        np.float32([np.inf, -np.inf, 3.4e38, -3.4e38, 0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38]),
        [huge, -huge, np.nextafter(huge, np.float32(0)), np.nextafter(-huge, np.float32(0)),
         np.float32(2.0**30) * s, -np.float32(2.0**30) * s],
        halves, np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf)),
        [HALF_BELOW * s, -HALF_BELOW * s], k * s,
    ]).astype(np.float32)
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    values = rng.uniform(-200, 200, size=size).astype(np.float32) * s
    values[:edges.size] = edges
    return values.reshape(1, *shape)


# (scale, zero point): a power of two (so (k + 0.5) * scale is an exact half), the fixture's
# own 1/127.5, each with zero points 0, positive, negative and at the ends.
CASES = [(2.0**-7, 0), (2.0**-7, 5), (2.0**-7, -1), (1 / 127.5, 0), (1 / 127.5, -128), (1 / 127.5, 127),
         (0.02, 17)]


@pytest.mark.parametrize("scale, zero_point", CASES)
def test_edges_bit_exact_on_the_host(tmp_path, scale, zero_point):
    path = _quantize_only(tmp_path, scale, zero_point)
    result = compile_model(path)
    write_files(result.files, tmp_path / "c")
    binary = build_host(tmp_path / "c", "mnv2", tmp_path / "model")
    inputs = _edge_inputs(scale, result.graph.input.shape[1:])
    output = result.graph.output
    ours = run_host(binary, inputs, np.int8, output.shape)
    expected = oracle.reference_outputs(path, inputs, output.shape, np.int8)
    assert expected.ran.all()
    assert np.array_equal(ours, expected.outputs)
    # The numpy model of TFLite's kernel agrees too (the test's own reading of it).
    assert np.array_equal(quant.float_quantize_reference(inputs, np.float32(scale), zero_point).reshape(ours.shape),
                          expected.outputs)


@pytest.mark.full
@pytest.mark.parametrize("scale, zero_point", [CASES[0], CASES[2], CASES[4]])
def test_edges_bit_exact_on_the_m4(tmp_path, scale, zero_point):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    path = _quantize_only(tmp_path, scale, zero_point)
    result = compile_model(path, _m4_options())
    write_files(result.files, tmp_path / "c")
    firmware = build_firmware(tmp_path / "c", "mnv2", get_board("mps2-an386"), tmp_path / "fw")
    inputs = _edge_inputs(scale, result.graph.input.shape[1:])
    output = result.graph.output
    ours = run_qemu(firmware, inputs, np.int8, output.shape).outputs
    expected = oracle.reference_outputs(path, inputs, output.shape, np.int8)
    assert np.array_equal(ours, expected.outputs)


def _m4_options():
    from mnv2gen.codegen.render import Options

    return Options(target="cortex-m4")


@pytest.mark.full
def test_rounding_of_the_generated_c_on_every_float(tmp_path):
    """The generated helpers, included as they are, against roundf on all 2^32 floats."""
    require_tools("cc")
    path = _quantize_only(tmp_path, 2.0**-7, 0)
    write_files(compile_model(path).files, tmp_path / "c")
    (tmp_path / "every.c").write_text(r'''
#include <math.h>
#include <stdio.h>
#include "mnv2_kernels.c"
int main(void)
{
    unsigned long long bad = 0;
    uint32_t bits = 0;
    do {
        float q;
        memcpy(&q, &bits, sizeof q);
        if (q == q && fabsf(q) < 2147483648.0f
            && mnv2_truncate_saturating(mnv2_plus_half_toward_sign(q)) != (int32_t)roundf(q)) {
            if (bad++ < 5) printf("0x%08x\n", (unsigned)bits);
        }
    } while (++bits != 0);
    printf("%llu\n", bad);
    return bad != 0;
}
''')
    subprocess.run(["cc", "-O2", "-ffp-contract=off", "-I", str(tmp_path / "c"), str(tmp_path / "every.c"),
                    "-o", str(tmp_path / "every"), "-lm"], check=True)
    run = subprocess.run([str(tmp_path / "every")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "0", run.stdout


# ---------------------------------------------------------------- arenas


def test_float_input_arena_is_the_float_frame():
    """The int8 frame is written over the float one as it is read: the arena is the float
    frame (27,648 floats), against 138,240 B with the two side by side."""
    assert _arena("mnv2_a035_96_float_in") == 110_592 == 96 * 96 * 3 * 4


def test_uint8_input_arena_equals_the_int8_twin():
    """ST model-zoo style uint8 input: the QUANTIZE table runs in place, so the arena is the
    int8-input network's (53,248 B; 98,304 B with the uint8 frame and its copy both live)."""
    assert _arena("mnv2_a035_128_uint8") == 53_248 == _arena("mnv2_a035_128_c1000")


def _arena(name: str) -> int:
    return compile_model(model_zoo.get_model(name)).arena_bytes
