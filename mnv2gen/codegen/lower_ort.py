"""Lower ops that follow ONNX Runtime's arithmetic (`ir.Arithmetic.ONNXRUNTIME`) to the
kernels of templates/ref/ort.c.j2, and its pipelines' convolutions to the variant's row
kernels with ONNX Runtime's output stage (templates/ref/ort_output_stage.c.j2, on the FPU
templates/dsp/ort_output_stage.c.j2).

Every float constant is computed here exactly as ONNX Runtime computes it at session start,
rounded to float32 step by step (numpy float32 scalars round each operation), so the C only
repeats ONNX Runtime's per-element steps. The int8 kernels see uint8 models' values shifted
by -128 (`Quantization.model_offset`); only ADD needs the stored values back.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import ir, ort_integer, ort_integer_add, quant, quant_ort
from ..errors import ModelError
from ..plan.rows import row_bytes
from .kernels import (POINTWISE_NARROW, OutputRounding, OutputStage, RowKernel, StageKind, Variant, choose_row_kernel,
                      pairs_taps)
from .blocks import float_scale_rows
from .lower import (Build, Layer, accumulator_bounds, accumulator_ranges, conv_bias, conv_geometry, fast_blocks,
                    fully_connected_bias, fully_connected_operands, scalar_call)
from .values import Float32

INT32_LIMIT = 2**31
INT16_LIMIT = 2**15  # QLinearGlobalAveragePool's sums in the SIMD variants' int16 lanes
# The SIMD kernels' accumulators are doubled (their weights are): partial sums below 2^30.
DOUBLED_LIMIT = 2**30
# ... and their output stage adds the zero point to the rounded product in int32: products
# below 2^29 (float32's rounding of acc and of the product moves it by far less than 2^29).
PRODUCT_LIMIT = 2**29


def float32_scales(x_scale: float, w_scales: tuple[float, ...], y_scale: float) -> np.ndarray:
    """S[c] = fl(fl(x_scale * w_scale[c]) / y_scale) (qlinearconv.cc's ComputeOutputScale)."""
    with np.errstate(over="ignore", under="ignore"):  # refused below, by the caller's _finite
        products = np.float32(x_scale) * np.asarray(w_scales, dtype=np.float32)
        return (products / np.float32(y_scale)).astype(np.float32)


def _finite(op: ir.Op, what: str, *values) -> None:
    """Scales so extreme that a derived constant overflows (or a requantization scale
    underflows to 0) give no arithmetic worth reproducing: the model is refused."""
    for value in values:
        array = np.asarray(value, dtype=np.float32)
        if not np.isfinite(array).all() or (what == "scale" and not (array > 0).all()):
            raise ModelError(f"op {op.index} ({op.op_name}): its scales give a {what} that is not a finite "
                             "float32 (or is 0)")


def integer_output(op: ir.Op, scales: np.ndarray, low, high, act_min: int, act_max: int) -> np.ndarray:
    """OutputStage.ORT_INTEGER's constants (cores without an FPU): each scale's mantissa and
    shift in one int32 word (ort_integer.scale_words), proven for every channel to give ONNX
    Runtime's output on every accumulator in [low[c], high[c]] (ort_integer.unproven_channels).
    A channel without a proof refuses the target."""
    zero_point = op.output.zero_point
    unproven = ort_integer.unproven_channels(scales, zero_point, act_min, act_max, low, high)
    if unproven.size:
        c = int(unproven[0])
        raise ModelError(
            f"op {op.index} ({op.op_name}, output tensor {op.output.name!r}), channel {c}: ONNX Runtime's float32 "
            f"requantization with scale {float(scales[c])!r} has no integer form proven equal over its "
            f"accumulators {int(low[c])}..{int(high[c])}; this core has no FPU: compile for one with an FPU "
            "(--target cortex-m4, cortex-m7, cortex-m33 or cortex-m55)")
    return ort_integer.scale_words(scales)


def fmaf(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    """a * b + c with one rounding to float32 (exact rational arithmetic, then rounded). The
    sum is exact in float64 only when the exponents are close, so it is done in Fraction."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    return _round_to_float32(exact)


def _round_to_float32(value: Fraction) -> np.float32:
    nearest = np.float32(float(value))  # float(Fraction) rounds correctly to float64, which
    # may then round again to float32: check the neighbours and take the nearest, ties even.
    candidates = [np.nextafter(nearest, np.float32(-np.inf)), nearest, np.nextafter(nearest, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(np.float32(c).view(np.int32)) & 1))
    return np.float32(best)


def _model_bias(op: ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected) -> np.ndarray:
    """The op's int32 bias as the model holds it (zeros where it has none)."""
    if op.bias is None:
        return np.zeros(op.output.shape[-1], np.int32)
    return op.bias.data.astype(np.int32)


def _accumulator_bound(op: ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected) -> None:
    """The C accumulates in int32, as ONNX Runtime does; prove no accumulator can overflow."""
    bias = _model_bias(op)
    weights = np.abs(op.weights.data.astype(np.int64))
    per_channel = (weights.reshape(-1, weights.shape[-1]).sum(axis=0) if isinstance(op, ir.DepthwiseConv2D)
                   else weights.reshape(weights.shape[0], -1).sum(axis=1))
    if (np.abs(bias.astype(np.int64)) + per_channel * 255).max() >= INT32_LIMIT:
        raise ModelError(f"op {op.index} ({op.op_name}): an accumulator could overflow int32")


def _conv_layer(op: ir.Op, number: int, build: Build, geometry: dict, depthwise: bool) -> Layer:
    bias = _model_bias(op)
    _accumulator_bound(op)
    layer = Layer(number, op, "ort_conv_s8", "ort_conv_params")
    scales = float32_scales(op.input.scale, op.weights.quant.scale, op.output.scale)
    _finite(op, "scale", scales)
    layer.params.update(
        geometry, depthwise=int(depthwise), input_zero_point=op.input.zero_point,
        output_zero_point=op.output.zero_point, weights=layer.array("weights", "int8_t", op.weights.data),
        bias=layer.array("bias", "int32_t", bias))
    if build.fpu:
        layer.params["scales"] = layer.array("scales", "float", scales)
    else:
        low, high = accumulator_ranges(op)
        layer.params["integer_scales"] = layer.array("integer_scales", "int32_t",
                                                     integer_output(op, scales, low, high, -128, 127))
    return layer


def _convolution(op: ir.Conv2D | ir.DepthwiseConv2D, number: int, build: Build) -> Layer:
    return _conv_layer(op, number, build, conv_geometry(op), isinstance(op, ir.DepthwiseConv2D))


def _gemm(op: ir.FullyConnected, number: int, build: Build) -> Layer:
    """QGemm on fully_connected_s8, the TFLite FULLY_CONNECTED's kernel (the variant's dot
    products, four units at a time) with ONNX Runtime's output stage, where its partial sums
    from the folded bias are proven inside int32; else a 1x1 convolution of a 1x1 image
    with `depth` channels on the portable ort_conv_s8."""
    units, depth = op.weights.shape
    if op.rows != 1:
        raise ModelError(f"op {op.index} (QGemm): only one row is supported")
    folded = fully_connected_bias(op)
    if (accumulator_bounds(op, folded) < INT32_LIMIT).all():
        return _fully_connected(op, number, build, folded)
    geometry = dict(in_h=1, in_w=1, in_c=depth, out_h=1, out_w=1, out_c=units, kernel_h=1, kernel_w=1,
                    stride_h=1, stride_w=1, pad_top=0, pad_left=0)
    return _conv_layer(op, number, build, geometry, depthwise=False)


def _fully_connected(op: ir.FullyConnected, number: int, build: Build, bias: np.ndarray) -> Layer:
    """fully_connected_params with `output_scales` in place of multipliers and shifts, and
    rounds_in_int32 where the FPU's output stage (dsp/ort_output_stage's `scaled`) is proven
    exact, as for the convolutions' SIMD kernels (_fast_output); else ort_requantize_within."""
    _accumulator_bound(op)
    units, depth = op.weights.shape
    scales = float32_scales(op.input.scale, op.weights.quant.scale, op.output.scale)
    _finite(op, "scale", scales)
    act_min, act_max = quant.activation_range(op.activation, op.output)
    layer = Layer(number, op, "fully_connected_s8", "fully_connected_params")
    layer.params.update(
        rows=op.rows, depth=depth, units=units, single_rounding=0, output_offset=op.output.zero_point,
        act_min=act_min, act_max=act_max, **fully_connected_operands(op, layer.array, build.variant))
    if build.fpu:
        layer.params.update(multiplier=None, shift=None, output_scales=layer.array("output_scales", "float", scales),
                            rounds_in_int32=int(build.variant.simd and _fast_output(op, bias, scales)))
    else:
        words = integer_output(op, scales, *accumulator_ranges(op), act_min, act_max)
        layer.params.update(multiplier=None, shift=None, integer_scales=layer.array("integer_scales", "int32_t", words))
    return layer


def _add_fields(op: ir.Add, size: int, build: Build, array) -> dict:
    """QLinearAdd's constants as its AVX2 kernel computes them, on the stored values, for
    `size` elements (all of them, or a row in a pipeline). With the SIMD variants'
    `rounds_in_int32`, the sums round to integers on the FPU and saturate in int32, where
    they are proven far inside int32 (|sum| < PRODUCT_LIMIT for any stored inputs). Without
    an FPU, the two tables of ort_integer_add, proven on every pair of inputs."""
    a, b, y = op.input.quant, op.other.quant, op.output.quant
    offset = y.model_offset
    if a.model_offset != offset or b.model_offset != offset:
        raise ModelError(f"op {op.index} (QLinearAdd): inputs and output of different element types")
    with np.errstate(over="ignore", under="ignore"):  # refused below
        a_ratio = np.float32(np.float32(a.scale[0]) / np.float32(y.scale[0]))
        b_ratio = np.float32(np.float32(b.scale[0]) / np.float32(y.scale[0]))
        _finite(op, "scale", a_ratio, b_ratio)
        a_zp, b_zp, y_zp = (np.float32(q.zero_point[0] + offset) for q in (a, b, y))
        _finite(op, "bias", a_ratio * a_zp, b_ratio * b_zp)  # fmaf needs finite operands
        bias = np.float32(y_zp - fmaf(a_ratio, a_zp, np.float32(b_ratio * b_zp)))
    _finite(op, "bias", bias)
    if not build.fpu:
        return dict(size=size, offset=offset, **_integer_add(op, a_ratio, b_ratio, bias, offset, array))
    reach = 255 * (float(a_ratio) + float(b_ratio)) + abs(float(bias))
    rounds_in_int32 = build.variant.simd and reach < PRODUCT_LIMIT
    return dict(size=size, offset=offset, a_ratio=Float32(a_ratio), b_ratio=Float32(b_ratio),
                bias=Float32(bias), low=Float32(-128 + offset), high=Float32(127 + offset),
                rounds_in_int32=int(rounds_in_int32),
                b_sums=(array("b_sums", "float", _inner_sums(b_ratio, bias, offset))
                        if rounds_in_int32 and not build.variant.helium else None))


def _inner_sums(b_ratio: np.float32, bias: np.float32, offset: int) -> np.ndarray:
    """QLinearAdd's inner fused multiply-add of every stored byte (indexed as uint8_t), the
    float32 ONNX Runtime's VFMA rounds it to (ort_integer_add's exact model, the one its
    integer tables are proven with): the DSP kernels look it up instead of converting b and
    fusing. Each is a float32, so the division by 2^UNITS is exact."""
    units = ort_integer_add.inner_sums(b_ratio, bias, offset)
    return np.array([float(Fraction(u, 1 << ort_integer_add.UNITS)) for u in units], dtype=np.float32)


def _integer_add(op: ir.Add, a_ratio, b_ratio, bias, offset: int, array) -> dict:
    """ort_add_s8's integer form (cores without an FPU): the tables of ort_integer_add, proven
    equal to ONNX Runtime's two fused multiply-adds on all 65,536 input pairs, else refused."""
    a_terms, b_terms, failure = ort_integer_add.proven_terms(a_ratio, b_ratio, bias, offset)
    if failure is not None:
        raise ModelError(
            f"op {op.index} (QLinearAdd, output tensor {op.output.name!r}): ONNX Runtime's float32 sum with "
            f"ratios {float(a_ratio)!r}, {float(b_ratio)!r} and bias {float(bias)!r} has no integer form proven "
            f"equal ({failure}); this core has no FPU: compile for one with an FPU "
            "(--target cortex-m4, cortex-m7, cortex-m33 or cortex-m55)")
    return dict(a_terms=array("a_terms", "int64_t", a_terms), b_terms=array("b_terms", "int64_t", b_terms),
                low=-128 + offset, high=127 + offset)


def _add(op: ir.Add, number: int, build: Build) -> Layer:
    layer = Layer(number, op, "ort_add_s8", "ort_add_params")
    layer.params.update(_add_fields(op, op.output.size, build, layer.array))
    return layer


def _global_average(op: ir.Mean, number: int, build: Build) -> Layer:
    _, h, w, channels = op.input.shape
    pixels = h * w
    with np.errstate(over="ignore", under="ignore"):  # refused below
        scale = np.float32(np.float32(op.input.scale) / np.float32(np.float32(op.output.scale) * np.float32(pixels)))
    _finite(op, "scale", scale)
    layer = Layer(number, op, "ort_global_average_s8", "ort_average_params")
    layer.params.update(pixels=pixels, channels=channels, input_zero_point_sum=op.input.zero_point * pixels,
                        output_zero_point=op.output.zero_point)
    if build.fpu:
        layer.params.update(scale=Float32(scale), sums_in_int16=int(build.variant.simd and pixels * 128 < INT16_LIMIT))
    else:  # acc = sum(x - x_zp) over the pixels
        low, high = [(np.array([bound - op.input.zero_point]) * pixels) for bound in (-128, 127)]
        layer.params["integer_scale"] = int(integer_output(op, np.array([scale]), low, high, -128, 127)[0])
    return layer


def _dequantize(op: ir.Dequantize, number: int, build: Build) -> Layer:
    if not build.fpu:  # fl((q - zp) * scale) of each of the 256 bytes, looked up: no float arithmetic
        layer = scalar_call(number, op, "ort_dequantize_table_s8_f32", None, op.output.size)
        with np.errstate(over="ignore"):
            table = (np.arange(-128, 128) - op.input.zero_point).astype(np.float32) * np.float32(op.input.scale)
        layer.scalar_args[0] = layer.array("dequantized", "float", table)
        return layer
    return scalar_call(number, op, "ort_dequantize_s8_f32", Float32(op.input.scale), op.input.zero_point,
                       op.output.size)


ORT_LOWERINGS = {
    ir.Conv2D: _convolution,
    ir.DepthwiseConv2D: _convolution,
    ir.FullyConnected: _gemm,
    ir.Add: _add,
    ir.Mean: _global_average,
    ir.Dequantize: _dequantize,
}


# --------------------------------------------------------------------------- pipeline stages


def _folded_accumulator_bound(op: ir.Conv2D, bias: np.ndarray) -> None:
    """A convolution row adds raw inputs (|x| <= 128, uint8 models' shifted) times weights to
    a bias with -x_zp * sum(w) folded in: that sum equals ONNX Runtime's accumulator, but
    its partial sums must stay in int32 too."""
    weights = np.abs(op.weights.data.astype(np.int64)).reshape(op.weights.shape[0], -1).sum(axis=1)
    weight_sums = op.weights.data.reshape(len(weights), -1).astype(np.int64).sum(axis=1)
    exact = _model_bias(op).astype(np.int64) - op.input.zero_point * weight_sums
    if (np.abs(exact) + weights * 128).max() >= INT32_LIMIT or not np.array_equal(exact, bias):
        raise ModelError(f"op {op.index} ({op.op_name}): an accumulator could overflow int32")


def _conv_stage(op: ir.Conv2D | ir.DepthwiseConv2D, array, build: Build) -> tuple[RowKernel, dict, str]:
    """The conv_params of a convolution stage in ONNX Runtime's arithmetic: the row kernel of
    the variant, as for TFLite (kernels.choose_row_kernel), with the output stage's scales:
    in the SIMD kernels' blocks where _fast_output proves the float stage exact (as
    ort_scale_rows for the DSP kernels' scalar stage, float rows for Helium's lanes), as
    `scales` rows for Helium's 1x1, and as `output_scales` for the row kernels that read
    plain arrays; and what the stage's comment says of its output stage."""
    bias = conv_bias(op)
    _accumulator_bound(op)
    if isinstance(op, ir.Conv2D):
        _folded_accumulator_bound(op, bias)
    scales = float32_scales(op.input.scale, op.weights.quant.scale, op.output.scale)
    _finite(op, "scale", scales)
    act_min, act_max = quant.activation_range(op.activation, op.output)
    variant = build.variant
    fast = variant.simd and _fast_output(op, bias, scales)
    kernel = choose_row_kernel(op, variant, fast_output_stage=fast)
    fields = dict(
        kernel=kernel, **conv_geometry(op), input_offset=-op.input.zero_point,
        output_offset=op.output.zero_point, act_min=act_min, act_max=act_max, small_accumulators=0,
        rounding=OutputRounding.SIGNED,  # each row of ort_scale_rows carries its own form (_rows_rounding)
        weights=None, bias=None, multiplier=None, shift=None, scales=None, blocks=None)
    output = f", output stage {OutputStage.of(op.arithmetic, build.fpu).name}"
    if not build.fpu:  # the portable row kernels (no blocks), ending in the integer stage
        words = integer_output(op, scales, *accumulator_ranges(op), act_min, act_max)
        fields.update(weights=array("weights", "int8_t", op.weights.data), bias=array("bias", "int32_t", bias),
                      integer_scales=array("integer_scales", "int32_t", words))
        return kernel, fields, output
    fields["output_scales"] = None
    if kernel.layout is not None and kernel.in_lanes:  # Helium's lanes: float rows only
        rows = float_scale_rows(scales, op.output.zero_point)
        fields["blocks"] = array("blocks", "int32_t", fast_blocks(op, kernel.layout, bias, rows,
                                                                  paired_taps=pairs_taps(kernel, op)))
        return kernel, fields, output
    if kernel.layout is not None:
        fixed = ort_scale_rows(op, bias, scales)
        deltas = fixed.deltas.astype(np.int32)
        fields["blocks"] = array("blocks", "int32_t", fast_blocks(op, kernel.layout, bias + deltas, fixed.rows,
                                                                  lambda bias: bias + deltas,
                                                                  paired_taps=pairs_taps(kernel, op)))
        fields["rounding"] = _rows_rounding(kernel, fixed)
        return kernel, fields, f"{output}, {fixed.fixed.sum()} of {len(scales)} channels in fixed point"
    fields["weights"] = array("weights", "int8_t", op.weights.data)
    fields["bias"] = array("bias", "int32_t", bias)
    if kernel.scale_rows:  # Helium's 1x1: the float rows its lanes read
        fields["scales"] = array("scales", "int32_t", float_scale_rows(scales, op.output.zero_point))
    else:  # the other row kernels that read plain arrays end in output_of, on `output_scales`
        fields["output_scales"] = array("output_scales", "float", scales)
    return kernel, fields, output


def _rows_rounding(kernel: RowKernel, fixed: quant_ort.FixedRows) -> OutputRounding:
    """conv_params.rounding of a stage on the DSP kernels' rows: UNSIGNED where every row is
    fixed point (each of them rounds without acc's sign) on a narrow 1x1 kernel, whose
    unsigned instance then leaves out the test for a float row (RenderedKernels.unsigned);
    SIGNED otherwise: each row tells its form. DEPTHWISE_GROUPS, the other kernel with an
    unsigned instance, keeps the test: a second instance of its large core would cost flash."""
    narrow = kernel in POINTWISE_NARROW.values()
    return OutputRounding.UNSIGNED if narrow and fixed.fixed.all() else OutputRounding.SIGNED


def _fast_output(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray, scales: np.ndarray) -> bool:
    """Whether the SIMD kernels' output stage is exact for every channel: their doubled
    partial sums stay inside int32, and the rounded product acc * S[c] plus the zero point
    too (the FPU's conversion saturates; the sum must not wrap)."""
    low, high = accumulator_ranges(op)
    products = np.maximum(np.abs(low), np.abs(high)).astype(np.float64) * scales.astype(np.float64)
    return bool((accumulator_bounds(op, bias) < DOUBLED_LIMIT).all() and (products < PRODUCT_LIMIT).all())


def ort_scale_rows(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray,
                   scales: np.ndarray) -> quant_ort.FixedRows:
    """The SIMD kernels' rows of `scales` (templates/dsp/ort_output_stage.c.j2) for a layer
    _fast_output accepted, and per channel the shift of its kernel's bias: a fixed-point row
    where quant_ort.fixed_rows proves one equal to ONNX Runtime's stage over the channel's
    accumulator range, else the float row (bias unshifted)."""
    low, high = accumulator_ranges(op)
    act_min, act_max = quant.activation_range(op.activation, op.output)
    return quant_ort.fixed_rows(scales, op.output.zero_point, act_min, act_max, low, high,
                                accumulator_bounds(op, bias), float_scale_rows(scales, op.output.zero_point))


def _quantize_fields(op: ir.Quantize, build: Build) -> dict:
    """QuantizeLinear of the float NCHW input, the first stage of the first pipeline (the
    only QUANTIZE of an ONNX model: the frontend sees to it)."""
    if not op.from_nchw or op.input.dtype != "float32":
        raise ModelError(f"op {op.index} (QuantizeLinear): only the float NCHW input can be quantized")
    if not build.fpu:
        raise ModelError(f"op {op.index} (QuantizeLinear): the model's float input is quantized by a float32 "
                         "division, and this core has no FPU: compile with --quantized-input (the C then takes "
                         "the quantized input) or for a core with an FPU")
    _, channels, height, width = op.input.shape
    return dict(channels=channels, height=height, width=width, scale=Float32(op.output.scale),
                zero_point=op.output.zero_point)


def lower_ort_stage(stage: ir.Op, array, build: Build) -> tuple[StageKind, dict, str]:
    """A pipeline stage of an ONNX model: its kind, params and what its comment names."""
    if isinstance(stage, ir.Quantize) and stage.input.dtype is ir.DType.UINT8:
        return StageKind.ORT_UINT8_INPUT, dict(size=row_bytes(stage.output)), ""
    if isinstance(stage, ir.Quantize):
        return StageKind.ORT_QUANTIZE_NCHW, _quantize_fields(stage, build), ""
    if isinstance(stage, ir.Add):
        fields = _add_fields(stage, row_bytes(stage.output), build, array)
        if not build.fpu:
            return StageKind.ORT_ADD, fields, ", in integers (ORT_INTEGER: two tables, proven on every input pair)"
        return StageKind.ORT_ADD, fields, ", rounded on the FPU (rounds_in_int32)" if fields["rounds_in_int32"] else ""
    kernel, fields, output = _conv_stage(stage, array, build)
    return kernel.stage, fields, f", kernel {kernel.name}{output}"
