"""ONNX models (QOperator, from onnxruntime's quantizer) compiled to C bit-exact against ONNX
Runtime: whole MobileNetV2-like models and single ops, ADD over every input pair, the
requantization's two roundings on accumulators above 2^24 and built ties, hostile files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_zoo
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.ir import RowPipeline
from mnv2gen.verification.board import run_on_board
from mnv2gen.verification import oracle
from mnv2gen.verification.host import run_c_on_host, verify


def assert_bit_exact_onnx(model_path, out_dir, count: int = 50):
    result = compile_model(model_path)
    write_files(result.files, out_dir)
    report = verify(model_path, result, out_dir, count=count)
    assert report.reference == "onnxruntime" and "ONNX Runtime 1." in report.oracle
    assert report.inputs == count + 2 and report.tflite_aborted == 0
    assert report.matched_tflite == report.inputs, report.first_mismatch
    assert report.distinct_outputs > 1  # the inputs reach the output: equality means something
    return result, report


FORMATS = {"qoperator": False, "qdq": True}


@pytest.mark.parametrize("qdq", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_mobilenet_v2_bit_exact(activation, qdq, out_dir):
    result, _ = assert_bit_exact_onnx(onnx_zoo.mobilenet_v2(activation, qdq=qdq), out_dir)
    kinds = {type(op).__name__ for op in result.graph.ops}
    stages = {type(s).__name__ for op in result.graph.ops if isinstance(op, RowPipeline) for s in op.stages}
    assert {"Mean", "FullyConnected", "Dequantize", "RowPipeline"} <= kinds
    assert {"Quantize", "Conv2D", "DepthwiseConv2D", "Add"} <= stages  # all of them streamed
    assert sum(op.macs() for op in result.graph.ops) > 5_000_000


@pytest.mark.parametrize("qdq", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
def test_dynamo_mobilenet_v2_bit_exact(activation, qdq, out_dir):
    """The dynamo exporter's head (ReduceMean + Reshape, left in float by the quantizer)."""
    result, _ = assert_bit_exact_onnx(onnx_zoo.mobilenet_v2(activation, qdq=qdq, exporter="dynamo"), out_dir)
    assert [type(op).__name__ for op in result.graph.ops[-3:]] == ["FloatMean", "FullyConnected", "Dequantize"]


@pytest.mark.parametrize("qdq", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
@pytest.mark.parametrize("kind", onnx_zoo.SINGLE_OPS)
def test_single_op_bit_exact(kind, activation, qdq, out_dir):
    assert_bit_exact_onnx(onnx_zoo.single_op(kind, activation, qdq=qdq), out_dir)


def test_qdq_reads_as_the_same_ops_as_qoperator():
    from mnv2gen.frontend import load_model

    def describe(path):
        return [(type(op), op.describe(), op.output.quant) for op in load_model(path).ops]

    for activation in onnx_zoo.ACTIVATIONS:
        assert describe(onnx_zoo.mobilenet_v2(activation, qdq=True)) == describe(onnx_zoo.mobilenet_v2(activation))


@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])  # Cortex-M4F, Cortex-M55
@pytest.mark.parametrize("model", ["mobilenet_v2", "add"])
def test_bit_exact_on_emulated_cortex_m(model, board, out_dir):
    """The portable kernels built for the board, run under QEMU, against ONNX Runtime."""
    from conftest import require_tools
    from test_firmware import TOOLS

    require_tools(*TOOLS)
    path = onnx_zoo.mobilenet_v2("uint8") if model == "mobilenet_v2" else onnx_zoo.single_op("add", "int8")
    result = compile_model(path, Options(target=BOARDS[board].core))
    write_files(result.files, out_dir)
    report = run_on_board(path, result, out_dir, BOARDS[board], count=3, per_layer=False)
    assert report.reference == "onnxruntime" and report.inputs == 5
    assert report.matched == report.inputs and report.bit_exact


@pytest.mark.full
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])  # Cortex-M4F, Cortex-M55
def test_dynamo_head_on_emulated_cortex_m(board, out_dir):
    """The float head's summation order and divisions on the boards' FPUs, under QEMU."""
    from conftest import require_tools
    from test_firmware import TOOLS

    require_tools(*TOOLS)
    path = onnx_zoo.mobilenet_v2("int8", qdq=True, exporter="dynamo")
    result = compile_model(path, Options(target=BOARDS[board].core))
    write_files(result.files, out_dir)
    report = run_on_board(path, result, out_dir, BOARDS[board], count=3, per_layer=False)
    assert report.reference == "onnxruntime" and report.inputs == 5
    assert report.matched == report.inputs and report.bit_exact


@pytest.mark.parametrize("flatten", ["Flatten", "Reshape to [1, C]"])
def test_float_mean_then_flatten_bit_exact(flatten, tmp_path):
    """The head's Reshape([1, -1]) written as Flatten(axis=1) or Reshape([1, C]): the same."""
    model = onnx.load(onnx_zoo.single_op("reduce_mean", "uint8"))
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    if flatten == "Flatten":
        reshape.op_type = "Flatten"
        reshape.attribute.append(helper.make_attribute("axis", 1))
        del reshape.input[1:]
    else:
        shape = next(t for t in model.graph.initializer if t.name == reshape.input[1])
        gemm_weights = next(n for n in model.graph.node if n.op_type == "QGemm").input[3]  # [units, C]
        channels = next(t for t in model.graph.initializer if t.name == gemm_weights).dims[1]
        shape.CopyFrom(numpy_helper.from_array(np.array([1, channels], np.int64), shape.name))
    onnx.save(model, tmp_path / "head.onnx")
    assert_bit_exact_onnx(tmp_path / "head.onnx", tmp_path / "out", count=10)


# Width 1.0, 128 px, 1000 classes: the large value of each of the axes in one model,
# in two forms (the 0.35/96/10 fixtures above have all four forms of both exporters).
LARGE = {"uint8-qoperator-legacy": ("uint8", False, "legacy"), "int8-qdq-dynamo": ("int8", True, "dynamo")}


def _large(form: str):
    activation, qdq, exporter = LARGE[form]
    return onnx_zoo.mobilenet_v2(activation, width=1.0, size=128, classes=1000, qdq=qdq, exporter=exporter)


@pytest.mark.parametrize("form", LARGE)
def test_large_mobilenet_v2_bit_exact(form, out_dir):
    result, _ = assert_bit_exact_onnx(_large(form), out_dir)
    assert result.graph.input.shape == (1, 3, 128, 128) and result.graph.output.shape == (1, 1000)
    assert sum(op.macs() for op in result.graph.ops) > 95_000_000  # 99.1 M


@pytest.mark.full
@pytest.mark.parametrize("board, form", [("mps2-an386", "uint8-qoperator-legacy"), ("mps3-an547", "int8-qdq-dynamo")])
def test_large_mobilenet_v2_on_emulated_cortex_m(board, form, out_dir):
    """One random input and the two extremes: each inference is 450 M instructions on the M4."""
    from conftest import require_tools
    from test_firmware import TOOLS

    require_tools(*TOOLS)
    path = _large(form)
    result = compile_model(path, Options(target=BOARDS[board].core))
    write_files(result.files, out_dir)
    report = run_on_board(path, result, out_dir, BOARDS[board], count=1, per_layer=False)
    assert report.reference == "onnxruntime" and report.inputs == 3
    assert report.matched == report.inputs and report.bit_exact


def test_uint8_session_sets_x64quantprecision():
    assert "x64quantprecision=1" in oracle.ort_description(onnx_zoo.single_op("conv", "uint8"))
    assert "x64quantprecision" not in oracle.ort_description(onnx_zoo.single_op("conv", "int8"))
    assert "qdqisint8allowed=1" in oracle.ort_description(onnx_zoo.single_op("conv", "int8"))


# --------------------------------------------------------------------------- hand-built graphs


def _constants(**values) -> list:
    return [numpy_helper.from_array(np.asarray(v), name) for name, v in values.items()]


def _qoperator_model(nodes, initializers, input_shape, output_shape, path):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _run_both(path, out_dir, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    result = compile_model(path)
    write_files(result.files, out_dir)
    ours = run_c_on_host(out_dir, "mnv2", x[np.newaxis], result.graph.output, sanitize=False)
    theirs = oracle.onnxruntime_outputs(path, x[np.newaxis], result.graph.output.shape, np.float32)
    assert theirs.ran.all(), theirs.info
    return ours[0], theirs.outputs[0]


def _add_model(path, dtype, a_scale, b_scale, c_scale, zero_points):
    """QLinearAdd of channel 0 and channel 1 of a [1, 2, 256, 256] input quantized with scale 1
    (the float input holds the integers themselves): every (a, b) pair once. Each channel is
    picked by a 1x1 convolution whose requantization scale is exactly 1 (x_scale 1, weight
    scale = output scale), so the ADD sees the input's values with scales of our choice."""
    zp_type = np.uint8 if dtype == "uint8" else np.int8
    offset = 128 if dtype == "uint8" else 0
    za, zb, zc = (zp_type(z + offset) for z in zero_points)
    consts = _constants(one=np.float32(1), zero=zp_type(offset), wa=np.array([[[[1]], [[0]]]], np.int8),
                        wb=np.array([[[[0]], [[1]]]], np.int8), sa=np.float32(a_scale), sb=np.float32(b_scale),
                        sc=np.float32(c_scale), wz=np.zeros(1, np.int8), za=za, zb=zb, zc=zc,
                        sa1=np.array([a_scale], np.float32), sb1=np.array([b_scale], np.float32))
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "zero"], ["q"]),
             helper.make_node("QLinearConv", ["q", "one", "zero", "wa", "sa1", "wz", "sa", "za"], ["a"]),
             helper.make_node("QLinearConv", ["q", "one", "zero", "wb", "sb1", "wz", "sb", "zb"], ["b"]),
             helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain="com.microsoft"),
             helper.make_node("DequantizeLinear", ["c", "sc", "zc"], ["y"])]
    return _qoperator_model(nodes, consts, [1, 2, 256, 256], [1, 1, 256, 256], path)


ADD_SCALE_SETS = [(0.05, 0.03, 0.07, (3, -20, 7)), (0.0235, 0.0235, 0.0235, (-128, 127, 0)),
                  (1.0 / 3, 0.1, 0.0371, (0, 0, -5)), (0.011, 0.9, 0.25, (100, -100, -20))]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("scales", ADD_SCALE_SETS, ids=lambda s: f"{s[0]:.3g}_{s[1]:.3g}_{s[2]:.3g}")
def test_add_every_input_pair(dtype, scales, tmp_path):
    *ratios, zero_points = scales
    path = _add_model(tmp_path / "add.onnx", dtype, *ratios, zero_points)
    grid = np.arange(-128, 128, dtype=np.float32) + (128 if dtype == "uint8" else 0)
    x = np.stack([np.repeat(grid, 256).reshape(256, 256), np.tile(grid, 256).reshape(256, 256)])[np.newaxis]
    ours, theirs = _run_both(path, tmp_path / "out", x)
    assert len(np.unique(theirs)) > 50  # the outputs span a range: not all clamped
    assert ours.tobytes() == theirs.tobytes(), f"{(ours != theirs).sum()} of 65536 pairs differ"


def _requantize_model(path, bias: int, scale_exponent: int):
    """A 1x1 convolution of a one-channel 16x16 input (the integers of the float input,
    weight 1), so each accumulator is bias + x, with requantization scale exactly
    2^-scale_exponent; its single-channel output is dequantized with scale 1."""
    scale = np.float32(2.0 ** -scale_exponent)
    consts = _constants(one=np.float32(1), zero=np.int8(0), w=np.ones((1, 1, 1, 1), np.int8),
                        ws=np.array([scale], np.float32), wz=np.zeros(1, np.int8), yz=np.int8(-128),
                        bias=np.array([bias], np.int32))
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "zero"], ["q"]),
             helper.make_node("QLinearConv", ["q", "one", "zero", "w", "ws", "wz", "one", "yz", "bias"], ["c"]),
             helper.make_node("DequantizeLinear", ["c", "one", "yz"], ["y"])]
    return _qoperator_model(nodes, consts, [1, 1, 16, 16], [1, 1, 16, 16], path)


@pytest.mark.parametrize("centre", [2**25 + 2**19, 2**26 + 3 * 2**19, 2**24 + 2**19 + 2**21])
def test_requantization_rounds_the_accumulator_first(centre, tmp_path):
    """Accumulators above 2^24 (float(acc) rounds them first) around an exact tie of the
    scaled value (centre * 2^-20 = k + 0.5): ONNX Runtime's two roundings differ there from
    one exact rounding, and the C must follow ONNX Runtime, as the model computes it here."""
    x = np.arange(-128, 128, dtype=np.float32).reshape(1, 1, 16, 16)
    path = _requantize_model(tmp_path / "requant.onnx", centre, 20)
    ours, theirs = _run_both(path, tmp_path / "out", x)
    acc = centre + np.arange(-128, 128, dtype=np.int64)
    two_roundings = np.rint(acc.astype(np.float32) * np.float32(2.0**-20))
    one_rounding = np.rint(acc / 2.0**20)
    assert (theirs.reshape(-1) == two_roundings).all()  # ONNX Runtime rounds twice (dequantized: y - zp)
    assert (one_rounding != two_roundings).any()  # and this input tells the two apart
    assert ours.tobytes() == theirs.tobytes()


# --------------------------------------------------------------------------- the dynamo head


def _float_mean_model(path, side: int, channels: int, x_scale: float, y_scale: float):
    """The dynamo exporter's head as onnxruntime.quantization leaves it (DequantizeLinear ->
    float ReduceMean over H, W -> Reshape -> QuantizeLinear), alone after the input's
    QuantizeLinear: opset 17, so the axes are an attribute (the zoo's opset 18 gives them
    as an input)."""
    consts = _constants(xs=np.float32(x_scale), zero=np.int8(0), ys=np.float32(y_scale),
                        shape=np.array([1, -1], np.int64))
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "zero"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "xs", "zero"], ["d"]),
             helper.make_node("ReduceMean", ["d"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "zero"], ["c"]),
             helper.make_node("DequantizeLinear", ["c", "ys", "zero"], ["y"])]
    return _qoperator_model(nodes, consts, [1, channels, side, side], [1, channels], path)


def _sequential_float_mean(q: np.ndarray, x_scale: float, y_scale: float) -> np.ndarray:
    """The head with its float sum taken in index order (not ONNX Runtime's), dequantized."""
    values = q.reshape(q.shape[0], -1).astype(np.float32) * np.float32(x_scale)
    sums = np.zeros(q.shape[0], np.float32)
    for i in range(values.shape[1]):
        sums = (sums + values[:, i]).astype(np.float32)
    means = (sums / np.float32(values.shape[1])).astype(np.float32)
    codes = np.clip(np.rint((means / np.float32(y_scale)).astype(np.float32)), -128, 127)
    return (codes * np.float32(y_scale)).astype(np.float32)


@pytest.mark.parametrize("side", [2, 3, 4, 5, 7])
def test_float_mean_sums_in_onnxruntimes_order(side, tmp_path):
    """Each channel's values sum to 0 as integers, so the float mean is the rounding errors
    of the dequantized values and of their sum, and an output scale of x_scale / 2^20 turns
    those into output codes: the summation order shows in the output. 64 channels give every
    alignment of a channel's row in ONNX Runtime's NCHW buffer (which sets Eigen's order)."""
    channels, x_scale, y_scale = 64, 0.0373, 0.0373 / 2**20
    rng = np.random.default_rng(side)
    q = rng.integers(-127, 128, (channels, side * side))
    q[:, -1] = 0
    q[:, -1] = -np.clip(q.sum(axis=1), -127, 127)
    q[:, 0] -= q.sum(axis=1)  # now every row sums to 0 (the first value may leave the range:
    q = np.clip(q, -128, 127)  # those few rows only sum to near 0)
    x = (q * np.float64(np.float32(x_scale))).astype(np.float32).reshape(1, channels, side, side)
    path = _float_mean_model(tmp_path / "mean.onnx", side, channels, x_scale, y_scale)
    assert type(compile_model(path).graph.ops[-2]).__name__ == "FloatMean"
    ours, theirs = _run_both(path, tmp_path / "out", x)
    assert len(np.unique(theirs)) > 5, theirs  # the rounding errors reach the codes
    if side * side > 4:  # a sum in index order gives other codes (2x2: Eigen sums in order too)
        assert (_sequential_float_mean(q.reshape(channels, -1), x_scale, y_scale) != theirs.reshape(-1)).any()
    assert ours.tobytes() == theirs.tobytes(), f"{(ours != theirs).sum()} of {channels} channels differ"
