"""Lower each scheduled op to a kernel call with its compile-time constants.

A `Layer` is everything the templates need for one step of `run()`: the kernel to call, a
params struct of named integer fields, the const arrays it points to, and where its inputs
and output sit in the arena. All arithmetic constants are computed here (through
`quant.py`), so the C does no set-up work at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ir, quant
from ..errors import ModelError
from ..plan.arena import ArenaPlan
from ..plan.rows import row_bytes, tensor_rows


class Symbol(str):
    """The name of a const array (without the prefix), as opposed to a literal value."""


class CExpr(str):
    """A C expression used as is (an address, an enum constant), with `{p}`/`{P}` standing
    for the prefix."""


@dataclass
class Decl:
    """A static const struct (`fields` a dict) or array of structs (`fields` a list of
    dicts) that a layer's params point to."""

    ctype: str  # without the prefix, e.g. "conv_params"
    name: str
    fields: dict | list[dict]
    comment: str = ""


@dataclass
class ConstArray:
    symbol: str  # without the prefix, e.g. "layer3_weights"
    ctype: str
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)


@dataclass
class Operand:
    offset: int  # byte offset in the arena
    ctype: str
    nbytes: int


@dataclass
class Layer:
    number: int
    op: ir.Op
    kernel: str  # kernel function name without prefix, e.g. "conv_1x1_s8"
    params_type: str | None  # struct type without prefix, e.g. "conv_params"
    params: dict[str, int | Symbol] = field(default_factory=dict)
    scalar_args: list[str] = field(default_factory=list)  # C literals or Symbols, for struct-less kernels
    arrays: list[ConstArray] = field(default_factory=list)
    decls: list[Decl] = field(default_factory=list)  # declared before the params struct
    takes_operands: bool = True  # False: the params already hold the arena addresses
    inputs: list[Operand] = field(default_factory=list)
    output: Operand | None = None

    @property
    def name(self) -> str:
        return f"layer{self.number}"

    def array(self, role: str, ctype: str, values: np.ndarray) -> Symbol:
        """Register a const array for this layer and return its symbol."""
        symbol = Symbol(f"{self.name}_{role}")
        self.arrays.append(ConstArray(symbol, ctype, np.ascontiguousarray(values).reshape(-1)))
        return symbol


@dataclass(frozen=True)
class Build:
    """What the C is made for. `reference`: whose rounding to follow where TFLite's reference
    kernels and TFLite Micro disagree (only per-channel FULLY_CONNECTED so far), "tflite" or
    "tflm". `kernels`: the variant it will be built with, "ref" (portable), "dsp" or "mve";
    the SIMD ones also take the constants of their fast paths."""

    reference: str = "tflite"
    kernels: str = "ref"


def lower(plan: ArenaPlan, reference: str = "tflite", kernels: str = "ref") -> list[Layer]:
    """The layers of the plan with their params and constants, for Build(reference, kernels)."""
    build = Build(reference, kernels)
    layers = []
    for number, op in enumerate(plan.steps):
        if isinstance(op, ir.RowPipeline):
            layer = _pipeline(plan, op, number, kernels)
        else:
            layer = LOWERINGS[type(op)](op, number, build)
        layer.inputs = [_operand(plan, t) for t in op.activation_inputs()]
        layer.output = _operand(plan, op.output)
        layers.append(layer)
    return layers


def _operand(plan: ArenaPlan, t: ir.Tensor) -> Operand:
    return Operand(offset=plan.offset(t), ctype=t.ctype, nbytes=t.nbytes)


def _bias_values(op: ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected, channels: int) -> np.ndarray:
    if op.bias is None:
        return np.zeros(channels, dtype=np.int64)
    return op.bias.data.reshape(-1).astype(np.int64)


def _folded_bias(op: ir.Conv2D | ir.DepthwiseConv2D | ir.FullyConnected, weight_sums: np.ndarray) -> np.ndarray:
    """bias - x_zp * sum(w) per output channel, given each channel's sum of weights (padded
    taps then read x_zp itself). Wrapped to int32 exactly as the reference's int32
    accumulator would wrap."""
    bias = _bias_values(op, len(weight_sums))
    return quant.wrap32(bias - op.input.zero_point * weight_sums.astype(np.int64)).astype(np.int32)


def _row_sums(weights: np.ndarray) -> np.ndarray:
    """Each output channel's sum of weights, for [out_c, ...] weights."""
    return weights.reshape(weights.shape[0], -1).astype(np.int64).sum(axis=1)


def _activation_fields(op) -> dict:
    act_min, act_max = quant.activation_range(op.activation, op.output)
    return dict(output_offset=op.output.zero_point, act_min=act_min, act_max=act_max)


def _requant_fields(op, array, multipliers: list[int], shifts: list[int]) -> dict:
    return dict(
        _activation_fields(op),
        multiplier=array("multiplier", "int32_t", np.array(multipliers, dtype=np.int32)),
        shift=array("shift", "int32_t", np.array(shifts, dtype=np.int32)),
    )


def _conv_stage(op: ir.Conv2D | ir.DepthwiseConv2D, array, kernels: str) -> tuple[str, dict]:
    """The stage kind and the conv_params fields of a (depthwise) convolution. The fast
    paths' constants (`scales`, `blocks`) are made only for SIMD kernels (the portable ones
    never read them), and where they are made they replace the arrays they supersede: flash
    is the scarce resource, and the SIMD kernels read `scales` instead of `multiplier` and
    `shift`, and `blocks` instead of all of the per-channel arrays."""
    _, in_h, in_w, in_c = op.input.shape
    _, out_h, out_w, out_c = op.output.shape
    kh, kw = op.kernel
    depthwise = isinstance(op, ir.DepthwiseConv2D)
    pointwise = not depthwise and (kh, kw) == (1, 1) and op.padding == ir.Padding()
    kind = "DEPTHWISE" if depthwise else ("CONV_1X1" if pointwise else "CONV")
    weights = op.weights.data
    # Convolutions fold -x_zp * sum(w) into the bias (padded taps read the zero point);
    # depthwise rows add the offset per tap and keep the model's bias.
    bias = _bias_values(op, out_c).astype(np.int32) if depthwise else _folded_bias(op, _row_sums(weights))
    multipliers, shifts = quant.per_channel_multipliers(
        op.input.scale, op.weights.quant.scale, op.output.scale, out_c)
    small = _accumulators_are_small(op, bias, shifts)
    fields = dict(
        in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
        kernel_h=kh, kernel_w=kw, stride_h=op.stride[0], stride_w=op.stride[1],
        pad_top=op.padding.top, pad_left=op.padding.left,
        input_offset=-op.input.zero_point, **_activation_fields(op), small_accumulators=int(small),
        weights="NULL", bias="NULL", multiplier="NULL", shift="NULL", scales="NULL", blocks="NULL",
    )
    simd = kernels != "ref"
    scales = quant.fast_output_scales(multipliers, shifts, op.output.zero_point) if simd and small else None
    blocks = None if scales is None else _fast_blocks(op, kind, kernels, bias, scales)
    if blocks is not None:
        fields["blocks"] = array("blocks", "int32_t", blocks)
        return kind, fields
    fields["weights"] = array("weights", "int8_t", weights)
    fields["bias"] = array("bias", "int32_t", bias)
    if scales is not None:
        fields["scales"] = array("scales", "int32_t", scales)
    else:
        fields.update(_requant_fields(op, array, multipliers, shifts))
    return kind, fields


def _fast_blocks(op: ir.Conv2D | ir.DepthwiseConv2D, kind: str, kernels: str, bias: np.ndarray,
                 scales: np.ndarray) -> np.ndarray | None:
    """The conv_params.blocks the SIMD kernels take for this layer, in the layout of its
    kernel, or None where they take the plain arrays. `bias` is the one conv_params would
    hold (folded for convolutions, the model's for depthwise ones)."""
    weights, in_c = op.weights.data, op.input.shape[-1]
    if kind == "DEPTHWISE":
        return _depthwise_blocks(op, weights, scales) if weights.shape[-1] % 4 == 0 else None
    if kind == "CONV_1X1" and in_c in NARROW_POINTWISE_INPUTS:
        return _channel_blocks(bias, weights, scales)
    if kind == "CONV_1X1" and in_c % 4 == 0 and kernels == "dsp":  # Helium has its own wide 1x1
        return _channel_quad_blocks(bias, weights, scales)
    if kind == "CONV" and op.kernel[0] * op.kernel[1] * in_c <= MAX_PACKED_PATCH:
        return _channel_pair_blocks(bias, _padded_rows(weights), scales)
    return None


# 1x1 convolutions with these many input channels (MobileNetV2's narrow bottlenecks
# expanding) get doubled 16-bit weights: two pixels' inputs then fit in registers as SMLAD
# pairs. Each count has its own unrolled kernel, hence a short list; wider layers keep
# int8 weights: doubling them all would double the flash.
NARROW_POINTWISE_INPUTS = (8, 16)
# Likewise other convolutions whose receptive field has at most this many bytes (the stem's
# 3x3x3): their patches are split into SMLAD pairs once, not once per output channel.
MAX_PACKED_PATCH = 64


def _padded_rows(weights: np.ndarray) -> np.ndarray:
    """Weights [out_c, ...] flattened per output channel and padded with zeros to a multiple
    of four: the kernels read whole words of a patch, whose extra bytes then count for 0."""
    rows = weights.reshape(weights.shape[0], -1)
    return np.pad(rows, ((0, 0), (0, -rows.shape[1] % 4)))


def _doubled_pairs(weights: np.ndarray) -> np.ndarray:
    """Weights [..., n] (n a multiple of 4), doubled, as int32 words of two int16 halves in
    the order SXTB16 splits four input bytes into: per four inputs, (0, 2) then (1, 3)."""
    doubled = 2 * weights.reshape(*weights.shape[:-1], -1, 4).astype(np.int64)
    halves = doubled & 0xFFFF
    pairs = np.stack([halves[..., 0] | halves[..., 2] << 16, halves[..., 1] | halves[..., 3] << 16], axis=-1)
    return pairs.reshape(*weights.shape[:-1], -1)


def _as_int32_words(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _channel_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The SIMD kernels' constants of a convolution, one block per output channel so a single
    pointer walks them: twice the folded bias (the doubled accumulator's start), the channel's
    weights ([out_c, ...], a multiple of four per channel) as _doubled_pairs, then its row of
    `scales`."""
    out_c = weights.shape[0]
    return _as_int32_words(np.concatenate([
        2 * folded_bias.astype(np.int64).reshape(out_c, 1),
        _doubled_pairs(weights.reshape(out_c, -1)),
        scales.astype(np.int64),
    ], axis=1))


def _filled_up(multiple: int, bias: np.ndarray, weights: np.ndarray, scales: np.ndarray):
    """bias, weights [out_c, ...] and scales filled up with zero channels (their scale a copy
    of the last, so still valid) to a multiple of `multiple` output channels: kernels that
    take channels in groups compute them and do not store their outputs."""
    padding = -weights.shape[0] % multiple
    return (np.append(bias.astype(np.int64), np.zeros(padding, dtype=np.int64)),
            np.concatenate([weights, np.zeros((padding, *weights.shape[1:]), dtype=weights.dtype)]),
            np.concatenate([scales, np.repeat(scales[-1:], padding, axis=0)]))


def _channel_pair_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Like _channel_blocks, one block per pair of output channels (an odd last one _filled_up
    with a zero channel): the two doubled biases, the two channels' weight pairs interleaved
    (one LDRD loads both channels' pair), the two rows of `scales`."""
    bias, weights, scales = _filled_up(2, folded_bias, weights, scales)
    channel_pairs = weights.shape[0] // 2
    pairs = _doubled_pairs(weights.reshape(weights.shape[0], -1))  # [out_c, input pairs]
    return _as_int32_words(np.concatenate([
        2 * bias.reshape(channel_pairs, 2),
        pairs.reshape(channel_pairs, 2, -1).transpose(0, 2, 1).reshape(channel_pairs, -1),
        scales.astype(np.int64).reshape(channel_pairs, 6),
    ], axis=1))


def _interleaved_quads(rows: np.ndarray) -> np.ndarray:
    """int8 weight rows [n, depth] (depth a multiple of four) regrouped for the DSP kernels'
    four-at-a-time dot products: per group of four rows (the last filled up with zero rows),
    per word of input the four rows' words, so one pointer walks them. [groups, depth] words."""
    n, depth = rows.shape
    padded = np.concatenate([rows, np.zeros((-n % 4, depth), dtype=rows.dtype)]).astype(np.int8)
    octets = padded.view(np.uint8).reshape(-1, 4, depth // 4, 4).astype(np.int64)  # [group, row, word, byte]
    words = octets[..., 0] | octets[..., 1] << 8 | octets[..., 2] << 16 | octets[..., 3] << 24
    return words.transpose(0, 2, 1).reshape(-1, depth)


def _channel_quad_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The DSP kernels' constants of a wider 1x1 convolution, one block per group of four
    output channels (the last _filled_up with zero channels): the four folded biases, the
    four channels' _interleaved_quads, the four rows of `scales`."""
    bias, weights, scales = _filled_up(4, folded_bias, weights.reshape(weights.shape[0], -1), scales)
    groups = weights.shape[0] // 4
    return _as_int32_words(np.concatenate([
        bias.reshape(groups, 4),
        _interleaved_quads(weights),
        scales.astype(np.int64).reshape(groups, 12),
    ], axis=1))


def _depthwise_blocks(op: ir.DepthwiseConv2D, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The SIMD depthwise kernels' constants, one block per group of four channels so a single
    pointer walks them:
    * 4 words: twice (bias - x_zp * sum of the channel's kernel), the doubled accumulator's
      start, every tap read (border windows read the zero point where they leave the input);
    * 2 words per tap: the group's weights as _doubled_pairs;
    * 12 words: the four channels' rows of `scales`."""
    taps, channels = weights.shape[1] * weights.shape[2], weights.shape[3]
    groups = channels // 4
    sums = weights.reshape(taps, channels).astype(np.int64).sum(axis=0)
    pairs = _doubled_pairs(weights.reshape(taps, groups, 4))  # [tap, group, 2]
    return _as_int32_words(np.concatenate([
        2 * _folded_bias(op, sums).astype(np.int64).reshape(groups, 4),
        pairs.transpose(1, 0, 2).reshape(groups, 2 * taps),
        scales.astype(np.int64).reshape(groups, 12),
    ], axis=1))


def _accumulators_are_small(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray, shifts: list[int]) -> bool:
    """Whether every accumulator, shifted left by its channel's left shift, stays below 2^30
    in magnitude for any input, so fast kernels may use a 32-bit output stage. A
    convolution multiplies raw int8 inputs (|x| <= 128) with its zero point folded into the
    bias; a depthwise one multiplies x - x_zp (|x - x_zp| <= 255)."""
    weights = op.weights.data.astype(np.int64)
    if isinstance(op, ir.DepthwiseConv2D):
        per_channel = np.abs(weights).reshape(-1, weights.shape[-1]).sum(axis=0) * 255
    else:
        per_channel = np.abs(weights).reshape(weights.shape[0], -1).sum(axis=1) * 128
    bound = (np.abs(bias.astype(np.int64)) + per_channel) << np.maximum(np.array(shifts, dtype=np.int64), 0)
    return bool((bound < (1 << 30)).all())


def _add_fields(op: ir.Add, size: int, array=None) -> dict:
    """ADD's params; with `array` (SIMD kernels) also the fast path's input tables where the
    output rescaling takes the 32-bit output stage."""
    left_shift = 20
    (m1, s1), (m2, s2), (mo, so) = quant.add_multipliers(
        op.input.scale, op.other.scale, op.output.scale, left_shift)
    act_min, act_max = quant.activation_range(op.activation, op.output)
    fields = dict(
        size=size, input1_offset=-op.input.zero_point, input2_offset=-op.other.zero_point,
        output_offset=op.output.zero_point, left_shift=left_shift,
        input1_multiplier=m1, input1_shift=s1, input2_multiplier=m2, input2_shift=s2,
        output_multiplier=mo, output_shift=so, act_min=act_min, act_max=act_max,
        small_values=int(max(s1, s2, so) <= 0),
        input_tables="NULL", output_rounding=0,
    )
    output_scale = quant.fast_output_scales([mo], [so], op.output.zero_point)
    if array is not None and output_scale is not None:
        tables = [quant.add_input_table(op.input.zero_point, m1, s1, left_shift),
                  quant.add_input_table(op.other.zero_point, m2, s2, left_shift)]
        # The fast output stage wants |sum| < 2^30: each rescaled input below 2^29 (they are
        # below 2^28: |x - zp| <= 255, shifted by 20, times a multiplier of at most one half).
        if max(int(np.abs(t.astype(np.int64)).max()) for t in tables) < (1 << 29):
            fields["input_tables"] = array("input_tables", "int32_t", np.concatenate(tables))
            fields["output_rounding"] = int(output_scale[0, 1])
    return fields


def _stage_summary(stage: ir.Op) -> str:
    text = stage.describe()
    if isinstance(stage, (ir.Conv2D, ir.DepthwiseConv2D)):
        text += f", {stage.kernel[0]}x{stage.kernel[1]} stride {stage.stride[0]}"
    if getattr(stage, "activation", ir.Activation.NONE) is not ir.Activation.NONE:
        text += f", {stage.activation.name}"
    return f"{text}, {stage.macs():,} MACs" if stage.macs() else text


def _pipeline(plan: ArenaPlan, op: ir.RowPipeline, number: int, kernels: str) -> Layer:
    """A row pipeline: a params struct per stage, a table of the buffers (whole tensors or
    rings, with their arena addresses) and a table of the stages."""
    layer = Layer(number, op, "pipeline_run", "pipeline", takes_operands=False)
    tensors = op.activation_inputs() + [stage.output for stage in op.stages]
    index = {id(t): i for i, t in enumerate(tensors)}
    buffers = []
    for t in tensors:
        buffer = plan.lifetimes.of(t)
        buffers.append(dict(base=CExpr(f"ARENA(int8_t, {plan.offset(t)})"), row_bytes=row_bytes(t),
                            height=tensor_rows(t), slots=buffer.rows))
    stages = []
    for k, stage in enumerate(op.stages):
        def array(role, ctype, values, k=k):
            return layer.array(f"s{k}_{role}", ctype, values)

        if isinstance(stage, ir.Add):
            fields = _add_fields(stage, row_bytes(stage.output), array if kernels != "ref" else None)
            kind, ctype = "ADD", "add_params"
        else:
            (kind, fields), ctype = _conv_stage(stage, array, kernels), "conv_params"
        comment = f"stage {k}: {_stage_summary(stage)}"
        layer.decls.append(Decl(ctype, f"{layer.name}_s{k}", fields, comment))
        inputs = stage.activation_inputs()
        stages.append(dict(kind=CExpr(f"{{P}}_STAGE_{kind}"), params=CExpr(f"&{layer.name}_s{k}"),
                           input=index[id(inputs[0])], other=index[id(inputs[1])] if len(inputs) > 1 else -1,
                           output=index[id(stage.output)]))
    layer.decls.append(Decl("row_buffer", f"{layer.name}_buffers", buffers,
                            "the pipeline's inputs, then each stage's output (slots < height: a ring)"))
    layer.decls.append(Decl("stage", f"{layer.name}_stages", stages))
    layer.params.update(stages=CExpr(f"{layer.name}_stages"), stage_count=len(stages),
                        buffers=CExpr(f"{layer.name}_buffers"), buffer_count=len(buffers))
    return layer


def _fully_connected(op: ir.FullyConnected, number: int, build: Build) -> Layer:
    units, depth = op.weights.shape
    layer = Layer(number, op, "fully_connected_s8", "fully_connected_params")
    quads = build.kernels == "dsp" and depth % 4 == 0  # the weights regrouped instead of stored twice
    layer.params.update(
        rows=op.rows, depth=depth, units=units, single_rounding=int(op.weights.quant.per_channel and build.reference == "tflite"),
        weights="NULL" if quads else layer.array("weights", "int8_t", op.weights.data),
        weight_quads=layer.array("weight_quads", "int32_t", _as_int32_words(_interleaved_quads(op.weights.data)))
        if quads else "NULL",
        bias=layer.array("bias", "int32_t", _folded_bias(op, _row_sums(op.weights.data))),
    )
    multipliers, shifts = quant.fully_connected_multipliers(
        op.input.scale, op.weights.quant.scale, op.output.scale, units)
    layer.params.update(_requant_fields(op, layer.array, multipliers, shifts))
    return layer


def _add(op: ir.Add, number: int, build: Build) -> Layer:
    """An ADD outside any pipeline (e.g. on 2-D tensors): one call over all elements."""
    layer = Layer(number, op, "add_s8", "add_params")
    layer.params.update(_add_fields(op, op.output.size, layer.array if build.kernels != "ref" else None))
    return layer


def _pad(op: ir.Pad, number: int, build: Build) -> Layer:
    _, in_h, in_w, channels = op.input.shape
    p = op.padding
    layer = Layer(number, op, "pad_s8", "pad_params")
    layer.params.update(in_h=in_h, in_w=in_w, channels=channels, pad_top=p.top,
                        pad_bottom=p.bottom, pad_left=p.left, pad_right=p.right,
                        pad_value=op.output.zero_point)
    return layer


def _average_pool(op: ir.AveragePool2D, number: int, build: Build) -> Layer:
    _, in_h, in_w, channels = op.input.shape
    _, out_h, out_w, _ = op.output.shape
    act_min, act_max = quant.activation_range(op.activation, op.output)
    layer = Layer(number, op, "average_pool_s8", "average_pool_params")
    layer.params.update(in_h=in_h, in_w=in_w, channels=channels, out_h=out_h, out_w=out_w,
                        filter_h=op.filter[0], filter_w=op.filter[1],
                        stride_h=op.stride[0], stride_w=op.stride[1],
                        pad_top=op.padding.top, pad_left=op.padding.left,
                        act_min=act_min, act_max=act_max)
    return layer


def _mean(op: ir.Mean, number: int, build: Build) -> Layer:
    _, h, w, channels = op.input.shape
    multiplier, shift = quant.mean_multiplier(op.input.scale, op.output.scale, h * w)
    layer = Layer(number, op, "mean_s8", "mean_params")
    layer.params.update(pixels=h * w, channels=channels,
                        input_zero_point_sum=int(quant.wrap32(op.input.zero_point * h * w)),
                        output_offset=op.output.zero_point, multiplier=multiplier, shift=shift)
    return layer


def _softmax(op: ir.Softmax, number: int, build: Build) -> Layer:
    depth = op.input.shape[-1]
    layer = Layer(number, op, "softmax_s8", "softmax_params")
    table = quant.softmax_exp_table(op.input.scale, op.beta)
    layer.params.update(rows=op.input.size // depth, depth=depth,
                        exp_table=layer.array("exp_table", "int32_t", table))
    return layer


def _table_lookup(op: ir.Op, number: int, table: np.ndarray) -> Layer:
    """Elementwise int8/uint8 ops become one byte table indexed by the input byte."""
    suffix = {("int8", "int8"): "s8", ("uint8", "int8"): "u8_s8", ("int8", "uint8"): "s8_u8"}
    kernel = f"lookup_{suffix[(op.input.dtype, op.output.dtype)]}"
    layer = Layer(number, op, kernel, None)
    symbol = layer.array("table", op.output.ctype, table)
    layer.scalar_args = [symbol, str(op.output.size)]
    return layer


def _logistic(op: ir.Logistic, number: int, build: Build) -> Layer:
    try:
        table = quant.logistic_table(op.input, op.output)
    except ValueError as exc:
        raise ModelError(f"op {op.index} (LOGISTIC): {exc}, so TFLite's own table differs between C "
                         "libraries and no C can be proven equal to it") from None
    return _table_lookup(op, number, table)


def _quantize(op: ir.Quantize, number: int, build: Build) -> Layer:
    if op.input.dtype != "float32":
        return _table_lookup(op, number, quant.requantize_table(op.input, op.output))
    layer = Layer(number, op, "quantize_f32_s8", None)
    layer.scalar_args = [_float_literal(op.output.scale), str(op.output.zero_point), str(op.output.size)]
    return layer


def _dequantize(op: ir.Dequantize, number: int, build: Build) -> Layer:
    layer = Layer(number, op, "dequantize_s8_f32", None)
    layer.scalar_args = [repr(float(op.input.scale)), str(op.input.zero_point), str(op.output.size)]
    return layer


def _float_literal(value: float) -> str:
    """A float32 value as an exact C float literal."""
    return f"{float(np.float32(value))!r}f"


LOWERINGS = {
    ir.FullyConnected: _fully_connected,
    ir.Add: _add,
    ir.Pad: _pad,
    ir.AveragePool2D: _average_pool,
    ir.Mean: _mean,
    ir.Softmax: _softmax,
    ir.Logistic: _logistic,
    ir.Quantize: _quantize,
    ir.Dequantize: _dequantize,
}
