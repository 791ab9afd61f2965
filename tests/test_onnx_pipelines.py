"""ONNX models in row pipelines: the streaming schedule of the TFLite flagship with ONNX
Runtime's output stage and QLinearAdd, the NCHW QuantizeLinear as the first stage, and
`--quantized-input`. Exact arena figures, the planner's rows against the C engine's, bit-exact
on the host (and in the full tier under QEMU on the M4 and M55), errors exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_zoo
from mnv2gen import ir
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, plan_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.host_sim.build import build_host, row_trace_flags
from mnv2gen.host_sim.runner import trace_rows_host
from mnv2gen.verification.compare import make_inputs, model_inputs
from mnv2gen.verification.host import verify
from onnx_checks import assert_matches_onnxruntime, run_under_qemu
from test_engine_trace import PREFIX, assert_same_trace, planned_trace

FLAGSHIP_TFLITE = "models/mobilenet_v2_035_96.tflite"
# The planned arena of the 0.35/96/10-class fixture, by activation type, with the float NCHW
# input (110,592 B) and with --quantized-input (27,648 B of int8 or uint8 input). The uint8
# input takes one more ring of 3 rows x 96 x 3 bytes: its shift to the IR's int8.
ARENA = {("uint8", False): 111_456, ("int8", False): 111_456, ("uint8", True): 31_584, ("int8", True): 30_720}
STREAMED = (ir.Conv2D, ir.DepthwiseConv2D, ir.Add, ir.Quantize)


@pytest.mark.parametrize("quantized_input", [False, True], ids=["float-input", "quantized-input"])
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_arena_exact(activation, quantized_input):
    planned = plan_model(onnx_zoo.mobilenet_v2(activation), Options(quantized_input=quantized_input))
    assert planned.arena_bytes == ARENA[(activation, quantized_input)]
    assert not [op for op in planned.graph.ops if isinstance(op, STREAMED)]  # all in pipelines
    first = planned.graph.ops[0]
    assert isinstance(first, ir.RowPipeline) and isinstance(first.stages[0], ir.Quantize) != (
        quantized_input and activation == "int8")


def test_arena_targets_against_the_tflite_flagship():
    """The issue's targets: with --quantized-input within 10% of the TFLite flagship's arena;
    with the float input at most that plus the float input's extra bytes."""
    flagship = plan_model(FLAGSHIP_TFLITE).arena_bytes
    assert flagship == 30_720
    for activation in onnx_zoo.ACTIVATIONS:
        path = onnx_zoo.mobilenet_v2(activation)
        quantized = plan_model(path, Options(quantized_input=True))
        floats = plan_model(path)
        assert quantized.arena_bytes <= flagship * 1.1
        extra = floats.graph.input.nbytes - quantized.graph.input.nbytes
        assert extra == 82_944 and floats.arena_bytes <= quantized.arena_bytes + extra


@pytest.mark.parametrize("activation, quantized_input", [("uint8", False), ("int8", False), ("uint8", True)])
def test_engine_runs_the_planned_rows(activation, quantized_input, tmp_path):
    """The planner's rows (the NCHW input's plane rows included) are the C engine's."""
    path = onnx_zoo.mobilenet_v2(activation)
    result = compile_model(path, Options(quantized_input=quantized_input))
    write_files(result.files, tmp_path)
    binary = build_host(tmp_path, PREFIX, tmp_path / "model_rows", opt="-O1", extra_flags=row_trace_flags(PREFIX))
    ours = trace_rows_host(binary, make_inputs(result.graph, 1)[0])
    # Row 5 of the third plane of the float input; of the uint8 input, its row 95 (the last).
    assert ("read", 0, 95 if quantized_input else 2 * 96 + 5) in ours
    assert_same_trace(ours, planned_trace(result.plan.steps))


FORMATS = onnx_zoo.FORMATS


@pytest.mark.parametrize("qdq", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_quantized_input_bit_exact(activation, qdq, out_dir):
    path = onnx_zoo.mobilenet_v2(activation, qdq=qdq)
    result = compile_model(path, Options(quantized_input=True))
    t = result.graph.input
    assert (t.dtype, t.shape, t.layout) == (activation, (1, 96, 96, 3), ir.Layout.NHWC)
    write_files(result.files, out_dir)
    report = verify(path, result, out_dir, count=50)
    assert report.reference == "onnxruntime" and report.inputs == 52
    assert report.matched_tflite == report.inputs and report.distinct_outputs > 1, report.first_mismatch
    readme = result.files["mnv2_README.md"]
    assert f"scale {t.scale!r}, zero point {t.zero_point}" in readme and "--quantized-input" in readme
    header = result.files["mnv2_model.h"]
    assert f"#define MNV2_INPUT_BYTES 27648" in header and f"{t.ctype} (NHWC)" in header


@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_oracle_inputs_quantize_back_in_onnxruntime(activation, tmp_path):
    """The float inputs verify gives ONNX Runtime for a --quantized-input C: ORT's own
    QuantizeLinear, with the model's scale and zero point, turns them back into the C's
    bytes, for every byte value."""
    graph = plan_model(onnx_zoo.mobilenet_v2(activation), Options(quantized_input=True)).graph
    t = graph.input
    dtype = np.dtype(activation)
    codes = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
    ours = np.resize(codes, (2, *t.shape))  # every value in every channel, NHWC
    floats = model_inputs(graph, ours)
    assert floats.shape == (2, 1, 3, 96, 96) and floats.dtype == np.float32
    elem = TensorProto.UINT8 if activation == "uint8" else TensorProto.INT8
    quantize = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    consts = [numpy_helper.from_array(np.float32(t.scale), "s"),
              numpy_helper.from_array(np.asarray(t.zero_point, dtype), "z")]
    model = helper.make_model(helper.make_graph(
        [quantize], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("q", elem, [1, 3, 96, 96])], consts),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "q.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    for x, expected in zip(floats, ours):
        back = session.run(None, {"x": x})[0]
        np.testing.assert_array_equal(back.transpose(0, 2, 3, 1), expected)


def test_quantized_input_refused_for_tflite_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", FLAGSHIP_TFLITE, "--out",
                          str(tmp_path / "c"), "--quantized-input"], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "--quantized-input" in lines[0] and "Traceback" not in run.stderr
    assert not (tmp_path / "c").exists()


def test_quantized_input_in_the_banner():
    quantized = compile_model(onnx_zoo.mobilenet_v2("int8"), Options(quantized_input=True)).files
    assert "--quantized-input" in quantized["mnv2_model.c"].splitlines()[2]


@pytest.mark.full
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])  # Cortex-M4F, Cortex-M55
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_quantized_input_on_emulated_cortex_m(activation, board, out_dir):
    """The pipelines with the kernels of the board's core built for it (Helium's on the M55),
    under QEMU, against ONNX Runtime (the float input's build is test_onnx_matrix.py's)."""
    from test_onnx import MOBILENET_KERNELS, _stage_kernels

    path = onnx_zoo.mobilenet_v2(activation)
    result = compile_model(path, Options(target=BOARDS[board].core, quantized_input=True))
    assert set(_stage_kernels(result.files["mnv2_model.c"])) == MOBILENET_KERNELS[board]
    inputs = make_inputs(result.graph, 3)
    assert_matches_onnxruntime(path, result, inputs, run_under_qemu(board, result, out_dir, inputs), board)


@pytest.mark.parametrize("quantized_input", [False, True], ids=["float-input", "quantized-input"])
def test_mismatch_names_the_first_differing_layer(quantized_input, out_dir):
    """A C made wrong on purpose (one weight of layer 3's expansion changed) is a MISMATCH
    whose report names layer 3, found by comparing every layer's output with ONNX Runtime's
    tensor of the same node."""
    path = onnx_zoo.mobilenet_v2("uint8")
    result = compile_model(path, Options(quantized_input=quantized_input))
    write_files(result.files, out_dir)
    weights = out_dir / "mnv2_weights.c"
    text = weights.read_text()
    # Flip the first weight of layer 3 (byte arrays are string literals of hex escapes).
    start = text.index("mnv2_layer3_s0_weights[")
    first = text.index('{\n    "\\x', start) + len('{\n    "\\x')
    value = int(text[first:first + 2], 16)
    weights.write_text(text[:first] + f"{value ^ 0x80:02x}" + text[first + 2:])
    report = verify(path, result, out_dir, count=5)
    assert report.matched_tflite < report.inputs
    assert "layer 3 (ONNX node" in report.first_mismatch and "values differ" in report.first_mismatch, \
        report.first_mismatch


@pytest.mark.parametrize("exporter", onnx_zoo.EXPORTERS)
def test_unchanged_c_matches_every_layer(exporter, tmp_path):
    """The diff itself on a correct C: every layer's output equals ONNX Runtime's (the dynamo
    head's fused node named by its QuantizeLinear's output)."""
    from mnv2gen.verification.host import first_differing_onnx_layer

    path = onnx_zoo.mobilenet_v2("int8", exporter=exporter)
    result = compile_model(path)
    write_files(result.files, tmp_path)
    message = first_differing_onnx_layer(path, result, tmp_path, make_inputs(result.graph, 1)[0], "mnv2")
    assert message == "every layer output matches ONNX Runtime; only the final output differs"
