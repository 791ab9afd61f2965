"""ONNX models (QOperator, from onnxruntime's quantizer) compiled to C bit-exact against ONNX
Runtime: single ops, ADD over every input pair, the requantization's two roundings on
accumulators above 2^24 and built ties (whole MobileNetV2s: test_onnx_matrix.py)."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_zoo
from mnv2gen import ir
from mnv2gen.codegen import lower_ort
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.verification import oracle
from mnv2gen.verification.compare import make_inputs
from mnv2gen.verification.host import run_c_on_host
from onnx_checks import assert_bit_exact_onnx, assert_matches_onnxruntime, run_under_qemu


FORMATS = onnx_zoo.FORMATS


@pytest.mark.parametrize("qdq", FORMATS.values(), ids=FORMATS)
@pytest.mark.parametrize("activation", onnx_zoo.ACTIVATIONS)
@pytest.mark.parametrize("kind", onnx_zoo.SINGLE_OPS)
def test_single_op_bit_exact(kind, activation, qdq, out_dir):
    assert_bit_exact_onnx(onnx_zoo.single_op(kind, activation, qdq=qdq), out_dir)


# The row kernels the 0.35/96 fixture's stages take on each board: the DSP kernels on the
# Cortex-M4F, Helium's on the Cortex-M55 (test_onnx_matrix.py runs them under QEMU).
MOBILENET_KERNELS = {"mps2-an386": {"CONV_PACKED", "POINTWISE_NARROW_8", "POINTWISE_NARROW_16", "POINTWISE_STAGED",
                                    "POINTWISE_TRIPLES", "POINTWISE_PAIRS", "DEPTHWISE_GROUPS"},
                     "mps3-an547": {"CONV_VECTORS", "POINTWISE_VECTORS", "DEPTHWISE_SIXTEENS"}}


def _stage_kernels(model_c: str) -> list[str]:
    """The row kernels the model's C names, one per convolution stage, with ONNX Runtime's
    output stage (kernels.OutputStage.ORT_FLOAT32)."""
    named = re.findall(r"kernel (\w+), output stage (\w+)", model_c)
    assert named and {stage for _, stage in named} == {"ORT_FLOAT32"}
    return [kernel for kernel, _ in named]


@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])  # Cortex-M4F, Cortex-M55
def test_mobilenet_kernels_and_rows_per_board(board):
    """The 0.35/96 fixture's C for each board: the DSP kernels on the M4 with both kinds of
    output rows (fixed point where quant_ort proves it, float where not), Helium's on the M55
    with float rows only (its lanes take one arithmetic)."""
    result = compile_model(onnx_zoo.mobilenet_v2("uint8"), Options(target=BOARDS[board].core))
    model_c = result.files["mnv2_model.c"]
    assert set(_stage_kernels(model_c)) == MOBILENET_KERNELS[board]
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+) of (\d+) channels in fixed point", model_c)]
    if board == "mps2-an386":
        assert sum(k for k, _ in counts) > 0.9 * sum(n for _, n in counts) and any(k < n for k, n in counts)
    else:
        assert not counts


@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])  # Cortex-M4F, Cortex-M55
@pytest.mark.parametrize("model", ["add", "gap"])
def test_bit_exact_on_emulated_cortex_m(model, board, tmp_path):
    """The kernels the compiler picks for the board, under QEMU, against ONNX Runtime
    (QLinearGlobalAveragePool over 144 pixels summed in int16 lanes)."""
    path = onnx_zoo.single_op(model, "int8")
    result = compile_model(path, Options(target=BOARDS[board].core))
    if model == "gap":
        assert "sums_in_int16 = 1" in result.files["mnv2_model.c"]
    inputs = make_inputs(result.graph, 3)
    assert_matches_onnxruntime(path, result, inputs, run_under_qemu(board, result, tmp_path / "c", inputs), board)


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


def _add_model(path, dtype, a_scale, b_scale, c_scale, zero_points, rows: int = 256):
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
    return _qoperator_model(nodes, consts, [1, 2, rows, 256], [1, 1, rows, 256], path)


# The last set's int8 sums tell the fused multiply-adds from a multiply and an add rounded
# apart (3 of the 65,536 pairs; found by a search over random scales).
ADD_SCALE_SETS = [(0.05, 0.03, 0.07, (3, -20, 7)), (0.0235, 0.0235, 0.0235, (-128, 127, 0)),
                  (1.0 / 3, 0.1, 0.0371, (0, 0, -5)), (0.011, 0.9, 0.25, (100, -100, -20)),
                  (0.05163191258907318, 0.4325396418571472, 0.06646930426359177, (15, -109, -82))]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("scales", [*ADD_SCALE_SETS[:4], pytest.param(ADD_SCALE_SETS[4], marks=pytest.mark.full)],
                         ids=lambda s: f"{s[0]:.3g}_{s[1]:.3g}_{s[2]:.3g}")
def test_add_every_input_pair(dtype, scales, tmp_path):
    *ratios, zero_points = scales
    path = _add_model(tmp_path / "add.onnx", dtype, *ratios, zero_points)
    grid = np.arange(-128, 128, dtype=np.float32) + (128 if dtype == "uint8" else 0)
    x = np.stack([np.repeat(grid, 256).reshape(256, 256), np.tile(grid, 256).reshape(256, 256)])[np.newaxis]
    ours, theirs = _run_both(path, tmp_path / "out", x)
    assert len(np.unique(theirs)) > 50  # the outputs span a range: not all clamped
    assert ours.tobytes() == theirs.tobytes(), f"{(ours != theirs).sum()} of 65536 pairs differ"


# The kernels of rounds_in_int32 under QEMU (the DSP variant's on the FPU, Helium's four lanes
# a step): each board with both element types, on different scale sets, and int8 on the
# fused multiply-adds' telling set.
ADD_ON_BOARDS = [("mps2-an386", "uint8", 0), ("mps2-an386", "int8", 3), ("mps3-an547", "uint8", 2),
                 ("mps3-an547", "int8", 1), ("mps2-an386", "int8", 4), ("mps3-an547", "int8", 4)]
FAST_ADD_ON_BOARD = ("mps2-an386", "int8", 4)  # the DSP kernel's table of inner sums on the telling set


@pytest.mark.parametrize("board, dtype, scale_set", [
    pytest.param(*case, marks=[] if case == FAST_ADD_ON_BOARD else [pytest.mark.full]) for case in ADD_ON_BOARDS])
def test_add_every_input_pair_under_qemu(board, dtype, scale_set, tmp_path):
    *ratios, zero_points = ADD_SCALE_SETS[scale_set]
    path = _add_model(tmp_path / "add.onnx", dtype, *ratios, zero_points, rows=128)  # the M55's RAM: two halves
    result = compile_model(path, Options(target=BOARDS[board].core))
    assert "rounds_in_int32 = 1" in result.files["mnv2_model.c"]  # the FPU kernel, not the portable one
    grid = np.arange(-128, 128, dtype=np.float32) + (128 if dtype == "uint8" else 0)
    x = np.stack([np.repeat(grid, 256).reshape(2, 1, 128, 256), np.tile(grid, 256).reshape(2, 1, 128, 256)], axis=2)
    theirs = assert_matches_onnxruntime(path, result, x, run_under_qemu(board, result, tmp_path / "c", x), board)
    assert len(np.unique(theirs)) > 50  # the outputs span a range: not all clamped


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


# ------------------------------------------------- the SIMD kernels' output stage on built ties


def _double_rounding_bias(scale: np.float32, sign: int) -> int:
    """A bias b such that one accumulator in b - 128 .. b + 127 (b itself) has acc * scale
    rounding in float32 to exactly a half k + 0.5 without being one, on the side where ONNX
    Runtime's RNE of the rounded product (to the even neighbour) differs from one exact
    rounding of acc * scale."""
    acc = sign * (np.arange(2**20, dtype=np.int64) + 2**22)
    exact = acc * np.float64(scale)  # exact: a 23-bit integer times a 24-bit significand
    rounded = (acc.astype(np.float32) * scale).astype(np.float64)  # acc < 2^24: exact in float32
    hits = np.flatnonzero((rounded % 1 == 0.5) & (np.rint(rounded) != np.rint(exact)))
    assert hits.size, "no double-rounding case for this scale"
    return int(acc[hits[0]])


def tie_channels() -> tuple[np.ndarray, np.ndarray]:
    """Eight output channels' (bias, requantization scale) on accumulators bias + x, x each of
    -128..127: exact ties x.5 of both signs at scales 1/2 and 1/4, ties above 2^24 where
    float(acc) rounds first (test_requantization_rounds_the_accumulator_first's), and the
    double-rounding cases of both signs."""
    odd_scale = np.float32(0.7071067811865476 / 2**16)
    bias = [0, 2, 2**25 + 2**19, 2**26 + 3 * 2**19, 2**24 + 2**19 + 2**21, -(2**25 + 2**19),
            _double_rounding_bias(odd_scale, 1), _double_rounding_bias(odd_scale, -1)]
    scales = [0.5, 0.25, 2.0**-20, 2.0**-20, 2.0**-20, 2.0**-20, odd_scale, odd_scale]
    return np.array(bias, np.int32), np.array(scales, np.float32)


# A stage of each SIMD row kernel: input channels, kernel, group, output channels.
TIE_KERNELS = {"pointwise_4": (4, (1, 1), 1, 8), "pointwise_8": (8, (1, 1), 1, 8), "pointwise_20": (20, (1, 1), 1, 8),
               "depthwise": (8, (3, 3), 8, 8), "depthwise_16": (16, (3, 3), 16, 16), "stem": (3, (3, 3), 1, 8),
               "depthwise_groups": (16, (3, 3), 16, 16), "depthwise_groups_inside": (16, (3, 3), 16, 16)}
# The DSP kernel DEPTHWISE_GROUPS ends a 3x3 group of four channels in one assembly block
# (templates/dsp/depthwise.c.j2) with code of its own for each output's fixed-point and float
# paths, one block for windows across the input's edge and one for windows inside it. The
# two "depthwise_groups" kinds run them all: tie_channels in an order that puts the float
# rows of its first two (quant_ort proves no fixed-point row there) on each output of a
# group, beside fixed-point ones, on a 1x1 input (its window across the edge, as every other
# kind's) and on a 3x3 one, unpadded (its window inside).
TIE_ORDERS = dict.fromkeys(["depthwise_groups", "depthwise_groups_inside"], [0, 1, 2, 3, 4, 5, 0, 1, 6, 7, 2, 3, 4, 5, 6, 7])
TIE_SIDES = {"depthwise_groups_inside": 3}  # the input's height and width where not 1
# The row kernel each board takes for them: the DSP kernels on the Cortex-M4F, Helium's on the
# Cortex-M55 (POINTWISE_VECTORS with the inputs held in vectors, 4 and 8 of them, or streamed,
# 20: a vector and a tail of 4; DEPTHWISE_VECTORS on 8 channels, DEPTHWISE_SIXTEENS on 16).
TIE_CASES = {("mps2-an386", "pointwise_4"): "POINTWISE_TRIPLES", ("mps2-an386", "pointwise_8"): "POINTWISE_NARROW_8",
             ("mps2-an386", "depthwise"): "DEPTHWISE_GROUPS", ("mps2-an386", "depthwise_groups"): "DEPTHWISE_GROUPS",
             ("mps2-an386", "depthwise_groups_inside"): "DEPTHWISE_GROUPS", ("mps2-an386", "stem"): "CONV_PACKED",
             ("mps3-an547", "pointwise_4"): "POINTWISE_VECTORS", ("mps3-an547", "pointwise_8"): "POINTWISE_VECTORS",
             ("mps3-an547", "pointwise_20"): "POINTWISE_VECTORS", ("mps3-an547", "depthwise"): "DEPTHWISE_VECTORS",
             ("mps3-an547", "depthwise_16"): "DEPTHWISE_SIXTEENS", ("mps3-an547", "stem"): "CONV_VECTORS"}
# The tie models' (input, output) zero points by activation type: the output's off the middle,
# so the stage's zero point moves the outputs (and saturates some of them).
TIE_ZERO_POINTS = {"int8": (0, -3), "uint8": (128, 131)}


def _tie_channels_of(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """tie_channels() in the kind's order (TIE_ORDERS), else repeated over its output channels."""
    bias, scales = tie_channels()
    if kind in TIE_ORDERS:
        return bias[TIE_ORDERS[kind]], scales[TIE_ORDERS[kind]]
    copies = TIE_KERNELS[kind][3] // len(bias)
    return np.tile(bias, copies), np.tile(scales, copies)


def _tie_model(path, kind: str, channels=None, activation: str = "int8"):
    """One convolution of the kind on a 1x1 input (or TIE_SIDES'; padded to the kernel's size:
    one output pixel, whose centre tap is the input's centre pixel) whose pixels' channels all
    hold x (the float input's integer, quantized with scale 1; one input per x in
    -128..127): only the centre tap of input channel 0 (of its own channel, depthwise)
    weighs 1, so each output channel's accumulator is its bias plus x, requantized by its
    scale (x_scale 1, y_scale 1: S = w_scale) around the ties, plus the output zero point
    (TIE_ZERO_POINTS). Flattened to [1, out_c]."""
    in_c, (kh, kw), group, out_c = TIE_KERNELS[kind]
    side = TIE_SIDES.get(kind, 1)
    bias, scales = channels or _tie_channels_of(kind)
    weights = np.zeros((out_c, in_c // group, kh, kw), np.int8)
    weights[:, 0, kh // 2, kw // 2] = 1
    x_zero, y_zero = (np.dtype(activation).type(z) for z in TIE_ZERO_POINTS[activation])
    consts = _constants(one=np.float32(1), xz=x_zero, yz=y_zero, w=weights, ws=scales, wz=np.zeros(out_c, np.int8),
                        bias=bias)
    pads = [(kh - side) // 2, (kw - side) // 2, (kh - side) // 2, (kw - side) // 2]
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "xz"], ["q"]),
             helper.make_node("QLinearConv", ["q", "one", "xz", "w", "ws", "wz", "one", "yz", "bias"], ["c"],
                              group=group, pads=pads),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("DequantizeLinear", ["f", "one", "yz"], ["y"])]
    return _qoperator_model(nodes, consts, [1, in_c, side, side], [1, out_c], path)


def _gemm_tie_model(path, depth: int, channels=None, x_zero: int = 0):
    """The ties of _tie_model through a QGemm (transB, per-unit scales) of `depth` features:
    only feature 0 weighs 1 in each of the 8 units, so unit u's accumulator is bias[u] + x
    (with the input's zero point `x_zero`, bias[u] + x - x_zero)."""
    bias, scales = channels or tie_channels()
    weights = np.zeros((8, depth), np.int8)
    weights[:, 0] = 1
    consts = _constants(one=np.float32(1), zero=np.int8(0), xz=np.int8(x_zero), w=weights, ws=scales,
                        wz=np.zeros(8, np.int8), bias=bias)
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "xz"], ["q"]),
             helper.make_node("Flatten", ["q"], ["f"]),
             helper.make_node("QGemm", ["f", "one", "xz", "w", "ws", "wz", "bias", "one", "zero"], ["g"],
                              domain="com.microsoft", transB=1),
             helper.make_node("DequantizeLinear", ["g", "one", "zero"], ["y"])]
    return _qoperator_model(nodes, consts, [1, depth, 1, 1], [1, 8], path)


def _tie_inputs(in_c: int, side: int = 1) -> np.ndarray:
    """Every x in -128..127, one input each: [256, 1, in_c, side, side]."""
    return np.tile(np.arange(-128, 128, dtype=np.float32).reshape(256, 1, 1, 1, 1), (1, 1, in_c, side, side))


def test_tie_channels_tell_the_roundings_apart():
    """The built cases are what they say: ONNX Runtime's two roundings differ from one exact
    rounding on each of the double-rounding and above-2^24 channels, and ties hit both signs."""
    bias, scales = tie_channels()
    acc = bias[:, None].astype(np.int64) + np.arange(-128, 128)
    two = np.rint(acc.astype(np.float32) * scales[:, None])
    one = np.rint(acc * scales[:, None].astype(np.float64))
    assert [(two[c] != one[c]).any() for c in range(8)] == [False, False, True, True, True, True, True, True]
    halves = (acc.astype(np.float32) * scales[:, None]) % 1 == 0.5
    assert halves[0].sum() == 128 and halves[1].sum() == 64 and np.abs(two).max() <= 127


def test_simd_kernels_only_where_their_output_stage_is_proven(tmp_path):
    """A channel whose |acc * S| may reach 2^29 (its sum with the zero point could wrap after
    VCVTR saturates) sends its layer to the portable row kernel (a QGemm's unit to the portable
    rounding, and a QGemm whose folded partial sums may leave int32 to ort_conv_s8), and an
    ADD whose sums may reach it to the portable rounding; the proven ones take the SIMD kernels."""
    bias, scales = tie_channels()
    scales[0] = 2.0**9  # 128 * 2^9: far below 2^29; with the bias 2^22 below, above it
    assert "kernel POINTWISE_TRIPLES," in compile_model(_tie_model(tmp_path / "a.onnx", "pointwise_4", (bias, scales)),
                                                      Options(target="cortex-m4")).files["mnv2_model.c"]
    bias[0] = 2**22
    model_c = compile_model(_tie_model(tmp_path / "b.onnx", "pointwise_4", (bias, scales)),
                            Options(target="cortex-m4")).files["mnv2_model.c"]
    assert "kernel POINTWISE_PIXELS," in model_c and "kernel POINTWISE_TRIPLES" not in model_c
    gemm_c = compile_model(_gemm_tie_model(tmp_path / "g.onnx", 8, (bias, scales)),
                           Options(target="cortex-m4")).files["mnv2_model.c"]
    assert "fully_connected_s8(" in gemm_c and "rounds_in_int32 = 0" in gemm_c
    # fully_connected_s8's partial sums start from bias - x_zp * sum(w): with x_zp = -128 and
    # a bias 256 below 2^31 they could reach it where ONNX Runtime's (below 2^31 - 1) cannot.
    bias[:] = 2**31 - 256
    gemm_c = compile_model(_gemm_tie_model(tmp_path / "h.onnx", 8, (bias, scales), x_zero=-128),
                           Options(target="cortex-m4")).files["mnv2_model.c"]
    assert "ort_conv_s8(" in gemm_c and "fully_connected_s8(" not in gemm_c
    for ratio, fast in ((2.0**20, 1), (2.0**21, 0)):  # 255 * 2 * ratio against 2^29
        path = _add_model(tmp_path / "add.onnx", "int8", ratio, ratio, 1.0, (0, 0, 0), rows=1)
        assert f"rounds_in_int32 = {fast}" in compile_model(path, Options(target="cortex-m55")).files["mnv2_model.c"]


# In the fast tier the Helium kernels' stage, the depthwise one MobileNetV2 runs most, on
# uint8, and DEPTHWISE_GROUPS' every output path; every other case in the full tier.
FAST_TIE_CASES = {("mps3-an547", "depthwise_16", "uint8"), ("mps2-an386", "depthwise_groups", "int8"),
                  ("mps2-an386", "depthwise_groups_inside", "int8")}
TIE_RUNS = [pytest.param(board, kind, activation, marks=[] if (board, kind, activation) in FAST_TIE_CASES
                         else [pytest.mark.full])
            for board, kind in TIE_CASES for activation in (onnx_zoo.ACTIVATIONS if board == "mps3-an547" else ["int8"])]


@pytest.mark.parametrize("board, kind, activation", TIE_RUNS)
def test_simd_output_stage_on_ties_under_qemu(board, kind, activation, tmp_path):
    """Each SIMD row kernel's output stage on the built ties (x.5 products of both signs,
    accumulators above 2^24, double-rounding cases), under QEMU, against ONNX Runtime and the
    two-rounding formula: the DSP kernels' VCVTR on the Cortex-M4F, the Helium loops' four
    lanes (VCVT, VMUL.F32, VCVTN) on the Cortex-M55, int8 and uint8 activations there."""
    path = _tie_model(tmp_path / "ties.onnx", kind, activation=activation)
    model_c = _assert_ties_under_qemu(board, path, kind, tmp_path, activation)
    assert f"kernel {TIE_CASES[board, kind]}, output stage ORT_FLOAT32" in model_c
    if kind in TIE_ORDERS:  # a float row and a fixed-point one on each output of a group
        fixed = _fixed_point_channels(compile_model(path, Options(target=BOARDS[board].core))).reshape(-1, 4)
        assert (~fixed).any(axis=0).all() and fixed.any(axis=0).all()


def _fixed_point_channels(result) -> np.ndarray:
    """Per output channel of a tie model's convolution, whether quant_ort proved it a
    fixed-point row (lower_ort.ort_scale_rows: the rows its SIMD blocks hold)."""
    (conv,) = [stage for op in result.graph.ops if isinstance(op, ir.RowPipeline) for stage in op.stages
               if isinstance(stage, (ir.Conv2D, ir.DepthwiseConv2D))]
    scales = lower_ort.float32_scales(conv.input.scale, conv.weights.quant.scale, conv.output.scale)
    return lower_ort.ort_scale_rows(conv, lower_ort.conv_bias(conv), scales).fixed


# QGemm on fully_connected_s8: 8 features take the DSP's regrouped weights (weight_quads),
# 5 its dot_quad on plain rows; Helium's dot products either way.
GEMM_TIE_CASES = [("mps2-an386", 8), ("mps2-an386", 5), ("mps3-an547", 5)]


@pytest.mark.full
@pytest.mark.parametrize("board, depth", GEMM_TIE_CASES)
def test_fully_connected_output_stage_on_ties_under_qemu(board, depth, tmp_path):
    """QGemm on the FULLY_CONNECTED kernel with ONNX Runtime's output stage on the FPU
    (rounds_in_int32), on the built ties, under QEMU, against ONNX Runtime."""
    model_c = _assert_ties_under_qemu(board, _gemm_tie_model(tmp_path / "ties.onnx", depth), depth, tmp_path)
    assert "fully_connected_s8(" in model_c and "rounds_in_int32 = 1" in model_c
    assert ("weight_quads = NULL" in model_c) == (board != "mps2-an386" or depth % 4 != 0)


def _assert_ties_under_qemu(board: str, path, kind: str | int, tmp_path, activation: str | None = None) -> str:
    """The tie model at `path` (a _tie_model of `kind`, or with `activation` None a
    _gemm_tie_model of `kind` features, zero points 0) built for the board and run under
    QEMU on every x: equal to ONNX Runtime and to the two-rounding formula, saturated
    around the output zero point. Returns the model's C."""
    result = compile_model(path, Options(target=BOARDS[board].core))
    side = TIE_SIDES.get(kind, 1)
    x = _tie_inputs(TIE_KERNELS[kind][0] if activation else kind, side)
    theirs = assert_matches_onnxruntime(path, result, x, run_under_qemu(board, result, tmp_path / "c", x), board)
    bias, scales = _tie_channels_of(kind) if activation else tie_channels()
    y_zero, info = (TIE_ZERO_POINTS[activation][1], np.iinfo(activation)) if activation else (0, np.iinfo(np.int8))
    acc = bias[:, None].astype(np.int64) + np.arange(-128, 128)
    rounded = np.rint(acc.astype(np.float32) * scales[:, None]).T  # [x, channel]
    expected = np.clip(rounded + y_zero, info.min, info.max) - y_zero
    assert np.array_equal(theirs.reshape(expected.shape), expected)
    return result.files["mnv2_model.c"]


# ------------------------------------------------- the float input's QuantizeLinear on the FPU

QUANTIZE_SCALE = np.float32(0.37)  # 1 / 0.37 is no float32: a multiply by it would differ
QUANTIZE_WIDTH = 3  # a row of the DSP and Helium cores' loop: a pair of values, then a last one


def _quantize_model(path, dtype: str):
    """QuantizeLinear (scale 0.37, zero point 5 below the type's middle) of a [1, 1, 1, 3] input,
    passed through unchanged by a 1x1 QLinearConv (weight 1, S = 1), dequantized (one
    channel: its NCHW and NHWC bytes are the same)."""
    ztype = np.int8 if dtype == "int8" else np.uint8
    zero = ztype(-5 if dtype == "int8" else 123)
    consts = _constants(s=QUANTIZE_SCALE, z=zero, w=np.ones((1, 1, 1, 1), np.int8),
                        ws=np.ones(1, np.float32), wz=np.zeros(1, np.int8), bias=np.zeros(1, np.int32))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("QLinearConv", ["q", "s", "z", "w", "ws", "wz", "s", "z", "bias"], ["c"]),
             helper.make_node("DequantizeLinear", ["c", "s", "z"], ["y"])]
    shape = [1, 1, 1, QUANTIZE_WIDTH]
    return _qoperator_model(nodes, consts, shape, shape, path)


def _quantize_inputs() -> np.ndarray:
    """NaN, the infinities, huge and tiny values, the clamp's bounds and their neighbours,
    exact ties of x / 0.37 (k + 0.5 after the division's rounding) of both signs, and random
    values over the range and beyond, each at every position of a row (first or second of a
    pair, or the last one: the values, then rotated by one and by two): [n, 1, 1, 1, 3] float32."""
    halves = np.arange(-140, 140, dtype=np.float32) + np.float32(0.5)
    candidates = (halves * QUANTIZE_SCALE).astype(np.float32)
    ties = candidates[candidates / QUANTIZE_SCALE == halves]
    assert (ties > 0).sum() > 10 and (ties < 0).sum() > 10
    bounds = (np.arange(-135, 136, dtype=np.float32) * QUANTIZE_SCALE).astype(np.float32)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, -1e30, 1e-30, -1e-30, 0.0, -0.0],
                       np.float32)
    rng = np.random.default_rng(0)
    values = np.concatenate([special, ties, bounds, np.nextafter(bounds, np.float32(np.inf)),
                             np.nextafter(bounds, np.float32(-np.inf)), rng.uniform(-60, 60, 400).astype(np.float32)])
    values = np.concatenate([values, np.zeros(-len(values) % QUANTIZE_WIDTH, np.float32)])
    values = np.concatenate([np.roll(values, shift) for shift in range(QUANTIZE_WIDTH)])
    return values.reshape(-1, 1, 1, 1, QUANTIZE_WIDTH)


@pytest.mark.parametrize("board, dtype", [("mps2-an386", "int8"),
                                          pytest.param("mps2-an386", "uint8", marks=pytest.mark.full),
                                          pytest.param("mps3-an547", "int8", marks=pytest.mark.full)])
def test_float_input_quantize_under_qemu(board, dtype, tmp_path):
    """The float input's QuantizeLinear on the DSP and Helium cores (a true division, VCVTR,
    the upper clamp in int32; NaN clamped out of line, two values a step) against ONNX
    Runtime on NaN, infinities, ties and the bounds, each first or second of a pair or last."""
    path = _quantize_model(tmp_path / "quantize.onnx", dtype)
    result = compile_model(path, Options(target=BOARDS[board].core))
    assert "stage 0: QUANTIZE 1x1x1x3" in result.files["mnv2_model.c"]  # the row stage: ort_quantize_row
    x = _quantize_inputs()
    theirs = assert_matches_onnxruntime(path, result, x, run_under_qemu(board, result, tmp_path / "c", x), board)
    low, high = theirs.min(), theirs.max()
    assert (theirs.reshape(-1)[:2] == low).all() and theirs.reshape(-1)[2] == high  # NaN, inf
    assert len(np.unique(theirs)) == 256  # every stored value reached


def _average_model(path, height: int, width: int, channels: int = 8):
    """QLinearGlobalAveragePool (int8, scales 1, input zero point 3) of `channels` channels
    over height x width pixels, flattened and dequantized."""
    consts = _constants(one=np.float32(1), zero=np.int8(0), xz=np.int8(3))
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "xz"], ["q"]),
             helper.make_node("QLinearGlobalAveragePool", ["q", "one", "xz", "one", "zero"], ["g"],
                              domain="com.microsoft", channels_last=0),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("DequantizeLinear", ["f", "one", "zero"], ["y"])]
    return _qoperator_model(nodes, consts, [1, channels, height, width], [1, channels], path)


@pytest.mark.full
@pytest.mark.parametrize("board, channels", [("mps2-an386", 8), ("mps3-an547", 13)])
def test_global_average_int16_sums_at_their_bound_under_qemu(board, channels, tmp_path):
    """255 pixels, the most whose sums fit the int16 lanes (sums_in_int16; 256 do not): every
    channel all -128 or all 127 (the sums' extremes) and random, against ONNX Runtime; on the
    M55 (Helium's eight channels a step) 13 channels, a tail of five."""
    target = Options(target=BOARDS[board].core)
    assert "sums_in_int16 = 0" in compile_model(_average_model(tmp_path / "g256.onnx", 16, 16, channels),
                                                target).files["mnv2_model.c"]
    path = _average_model(tmp_path / "g255.onnx", 15, 17, channels)
    result = compile_model(path, target)
    assert "sums_in_int16 = 1" in result.files["mnv2_model.c"]
    rng = np.random.default_rng(0)
    pattern = np.resize(np.array([-1, 1, 1, -1, -1, -1, 1, 1], np.float32), channels)
    signs = np.stack([pattern, -pattern])
    extremes = np.where(signs > 0, 127, -128).astype(np.float32)[:, :, None, None] * np.ones((1, 1, 15, 17), np.float32)
    x = np.concatenate([extremes, rng.integers(-128, 128, (6, channels, 15, 17)).astype(np.float32)])[:, None]
    theirs = assert_matches_onnxruntime(path, result, x, run_under_qemu(board, result, tmp_path / "c", x), board)
    assert np.array_equal(theirs[:2].reshape(2, channels), np.where(signs > 0, 124, -128))  # (127 - 3), (-128 - 3) saturated
