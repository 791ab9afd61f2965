"""ONNX models on cores without an FPU (the Cortex-M0+): ONNX Runtime's output stage in
integers (kernels.OutputStage.ORT_INTEGER, mnv2gen/ort_integer.py). Its steps against numpy's
float32 on built ties, accumulators above 2^24 and random scales; the compile-time proof
catching a wrong form and refusing a scale it cannot prove; the C generated for the Cortex-M0+
run on the host and under QEMU (mps2-an385) against ONNX Runtime, with no soft-float call in
the image (QLinearAdd's integer form: tests/test_ort_integer_add.py)."""

from __future__ import annotations

import numpy as np
import pytest

import onnx_zoo
from mnv2gen import ort_integer, quant_ort
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.errors import ModelError
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.targets import TARGETS, has_fpu
from mnv2gen.verification import oracle
from mnv2gen.verification.board import run_on_board
from mnv2gen.verification.host import run_c_on_host, verify
from test_cli import assert_user_error, run_cli
from test_onnx import _gemm_tie_model, _requantize_model, _tie_inputs, _tie_model, tie_channels

M0PLUS = Options(target="cortex-m0plus", quantized_input=True)


def test_only_the_cortex_m0plus_lacks_an_fpu():
    assert [t for t in TARGETS if not has_fpu(t)] == ["cortex-m0plus"]


def _both(acc, scales, zero_point, act_min, act_max):
    mantissas, shifts = ort_integer.integer_scales(scales)
    ours = ort_integer.requantized(acc, mantissas[:, None], shifts[:, None], zero_point, act_min, act_max)
    theirs = quant_ort.ort_output(acc, scales[:, None], zero_point, act_min, act_max)
    return ours, theirs


def test_integer_steps_equal_float32_on_ties_and_above_2_24():
    """Every accumulator within 2^15 of test_onnx's tie channels (exact halves k + 0.5 of both
    signs, accumulators above 2^24 around ties, products that round to a half in float32),
    for three clamps: equal, and the cases are there (one exact rounding differs)."""
    bias, scales = tie_channels()
    acc = bias[:, None].astype(np.int64) + np.arange(-2**15, 2**15)
    for zero_point, act_min, act_max in ((0, -128, 127), (-128, -128, 127), (5, 5, 127)):
        ours, theirs = _both(acc, scales, zero_point, act_min, act_max)
        assert np.array_equal(ours, theirs)
    products = acc.astype(np.float32) * scales[:, None]
    single = np.rint(acc * scales[:, None].astype(np.float64))
    assert ((products % 1 == 0.5) & (np.abs(products) < 128)).sum() > 500
    assert ((np.rint(products) != single) & (np.abs(single) < 128)).sum(axis=1).tolist() == [0, 0, 2, 4, 1, 2, 1, 1]
    assert (np.abs(acc) > 2**24).sum() == 4 * 2**16
    assert ort_integer.unproven_channels(scales, 0, -128, 127, acc[:, 0], acc[:, -1]).size == 0


def test_integer_steps_equal_float32_on_random_scales():
    """Random float32 scales from 1e-7 to 0.3, 60,000 accumulators around a random point of
    each channel's output range (int32 wide at the small scales)."""
    rng = np.random.default_rng(7)
    scales = (10.0 ** rng.uniform(-7, -0.5, 32)).astype(np.float32)
    reach = np.minimum(2**31 - 2**17, 300 / scales.astype(np.float64))
    acc = (rng.uniform(-1, 1, 32) * reach).astype(np.int64)[:, None] + np.arange(-30_000, 30_000)
    ours, theirs = _both(acc, scales, 3, -128, 127)
    assert np.array_equal(ours, theirs)
    products = acc.astype(np.float32) * scales[:, None]
    assert ((np.rint(products) != np.rint(acc * scales[:, None].astype(np.float64))) & (np.abs(products) < 125)).any()


def test_the_proof_catches_a_wrong_integer_form(monkeypatch):
    """The proof is not vacuous: a form with one rounding (the exact product, no float32 step)
    fails exactly on the tie channels where ONNX Runtime's two roundings differ from one, and
    a multiplier 1,000 too large (relatively 1e-4) fails on wide ranges."""
    bias, scales = tie_channels()
    low, high = bias.astype(np.int64) - 128, bias.astype(np.int64) + 127

    def one_rounding(acc, mantissa, shift, zero_point, act_min, act_max):
        exact = np.rint(np.asarray(acc, dtype=np.float64) * mantissa / 2.0**np.asarray(shift)).astype(np.int64)
        return np.clip(exact, act_min - zero_point, act_max - zero_point) + zero_point

    with monkeypatch.context() as patch:
        patch.setattr(ort_integer, "requantized", one_rounding)
        assert list(ort_integer.unproven_channels(scales, 0, -128, 127, low, high)) == [2, 3, 4, 5, 6, 7]
    assert ort_integer.unproven_channels(scales, 0, -128, 127, low, high).size == 0
    wide = np.array([0.001234, 0.0004321], np.float32)
    integer_scales = ort_integer.integer_scales
    with monkeypatch.context() as patch:
        patch.setattr(ort_integer, "integer_scales", lambda s: (integer_scales(s)[0] + 1000, integer_scales(s)[1]))
        assert list(ort_integer.unproven_channels(wide, 0, -128, 127, [-10**6] * 2, [10**6] * 2)) == [0, 1]


def test_a_scale_without_integer_form_refuses_the_target(tmp_path):
    """A requantization scale of 2 (its shift below the form's 24) has no proven integer form:
    compiling for the Cortex-M0+ stops with one line naming the node, channel and what to do;
    the Cortex-M4 compiles it."""
    path = _requantize_model(tmp_path / "wide.onnx", 0, -1)
    assert_user_error(run_cli("compile", str(path), "--out", str(tmp_path / "c"), "--target", "cortex-m0plus",
                              "--quantized-input"),
                      "CONV_2D, output tensor", "channel 0", "scale 2.0", "FPU",
                      "--target cortex-m4")
    assert "ort_requantize" in compile_model(path, Options(target="cortex-m4")).files["mnv2_kernels.c"]


def test_the_float_input_needs_quantized_input_without_an_fpu():
    path = onnx_zoo.single_op("conv", "int8")
    with pytest.raises(ModelError, match="QuantizeLinear.*no FPU.*--quantized-input"):
        compile_model(path, Options(target="cortex-m0plus"))
    files = compile_model(path, M0PLUS).files
    assert "output stage ORT_INTEGER" in files["mnv2_model.c"] and "output_scales" not in files["mnv2_kernels.h"]


@pytest.mark.parametrize("model", ["conv", "gemm"])
def test_cortex_m0plus_c_on_ties_on_the_host(model, tmp_path):
    """The built ties through a 1x1 convolution's row kernel and a QGemm, the Cortex-M0+'s C
    built on the host (portable C), every x in -128..127: equal to ONNX Runtime."""
    path = (_tie_model(tmp_path / "t.onnx", "pointwise_4") if model == "conv"
            else _gemm_tie_model(tmp_path / "t.onnx", 8))
    in_c = 4 if model == "conv" else 8
    result = compile_model(path, M0PLUS)
    write_files(result.files, tmp_path / "c")
    if model == "conv":
        assert "kernel POINTWISE_PIXELS, output stage ORT_INTEGER" in result.files["mnv2_model.c"]
    x = _tie_inputs(in_c)
    shape = result.graph.input.shape  # every channel of an input holds the same x: any layout
    quantized = np.broadcast_to(np.arange(-128, 128).reshape(256, *[1] * len(shape)), (256, *shape))
    ours = run_c_on_host(tmp_path / "c", "mnv2", quantized.astype(np.int8), result.graph.output, sanitize=False)
    theirs = oracle.onnxruntime_outputs(path, x, result.graph.output.shape, np.float32)
    assert theirs.ran.all(), theirs.info
    assert ours.tobytes() == theirs.outputs.tobytes()


# The QGemm fixture (a 1x1 convolution, pooling, QGemm) runs under QEMU below in the fast tier.
@pytest.mark.parametrize("kind, activation", [("conv", "uint8"),
                                              *(pytest.param(kind, activation, marks=pytest.mark.full)
                                                for kind, activation in (("depthwise", "int8"), ("gap", "int8"),
                                                                         ("gemm", "uint8")))])
def test_cortex_m0plus_c_on_the_host(kind, activation, tmp_path):
    """The Cortex-M0+'s C of each op with an integer output stage, built on the host, against
    ONNX Runtime on random inputs."""
    path = onnx_zoo.single_op(kind, activation)
    result = compile_model(path, M0PLUS)
    write_files(result.files, tmp_path)
    report = verify(path, result, tmp_path, count=10)
    assert report.matched_tflite == report.inputs == 12 and report.distinct_outputs > 1, report.first_mismatch


def _soft_float_callers(elf) -> set[str]:
    """The image's functions that call libgcc's soft float (__aeabi_f*, __aeabi_d*)."""
    from test_cores import callers

    return callers(elf, r"__aeabi_[fd]\w*")


@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_cortex_m0plus_under_qemu_without_soft_float(activation, tmp_path):
    """The QGemm fixture (a 1x1 convolution, QLinearGlobalAveragePool, QGemm, DequantizeLinear)
    on mps2-an385 (the Armv6-M image): bit-exact against ONNX Runtime, and no function of the
    image calls soft float (QLinearAdd's ort_add_s8, linked, included)."""
    from conftest import require_tools
    from mnv2gen.firmware.build import build_firmware
    from test_firmware import TOOLS

    require_tools(*TOOLS, "arm-none-eabi-objdump")
    path = onnx_zoo.single_op("gemm", activation)
    result = compile_model(path, M0PLUS)
    write_files(result.files, tmp_path / "c")
    report = run_on_board(path, result, tmp_path / "c", BOARDS["mps2-an385"], count=3, per_layer=False)
    assert report.reference == "onnxruntime" and report.matched == report.inputs == 5 and report.bit_exact
    firmware = build_firmware(tmp_path / "c", "mnv2", BOARDS["mps2-an385"], tmp_path / "fw", options=result.options)
    # every ONNX pipeline's engine can dispatch to ort_add_s8 (in integers), so it is linked too
    assert firmware.symbol_address("mnv2_ort_add_s8") and _soft_float_callers(firmware.elf) == set()


@pytest.mark.full
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_mobilenet_v2_on_cortex_m0plus_under_qemu(activation, out_dir):
    """The 0.35/96 MobileNetV2-like model on mps2-an385 with --quantized-input: bit-exact, in
    integers throughout (its convolutions' output stage and its ADDs' two tables): no function
    of the whole image calls soft float."""
    from conftest import require_tools
    from mnv2gen.firmware.build import build_firmware
    from test_firmware import TOOLS

    require_tools(*TOOLS, "arm-none-eabi-objdump")
    path = onnx_zoo.mobilenet_v2(activation)
    result = compile_model(path, M0PLUS)
    model_c = result.files["mnv2_model.c"]
    assert model_c.count("output stage ORT_INTEGER") == 52
    assert model_c.count("in integers (ORT_INTEGER: two tables") == model_c.count("MNV2_STAGE_ORT_ADD,") == 10
    write_files(result.files, out_dir)
    report = run_on_board(path, result, out_dir, BOARDS["mps2-an385"], count=3, per_layer=False)
    assert report.reference == "onnxruntime" and report.matched == report.inputs == 5 and report.bit_exact
    # soft float: 320 M; soft-float ADDs: 183.3 M and 184.1 M; integer ADDs: 161.8 M and 162.4 M
    assert report.instructions_per_inference < 163_000_000
    firmware = build_firmware(out_dir, "mnv2", BOARDS["mps2-an385"], out_dir / "fw", options=result.options)
    assert _soft_float_callers(firmware.elf) == set()
