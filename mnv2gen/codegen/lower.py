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
from . import blocks
from .kernels import (FullyConnectedKernel, OutputRounding, RowKernel, StageKind, Variant,
                      choose_fully_connected_kernel, choose_row_kernel, pairs_taps)
from .values import ArenaAddress, ArrayRef, DeclRef, Double, Float32


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
    params: dict[str, object] = field(default_factory=dict)  # field -> value (see values.py)
    scalar_args: list[object] = field(default_factory=list)  # values, for struct-less kernels
    arrays: list[ConstArray] = field(default_factory=list)
    decls: list[Decl] = field(default_factory=list)  # declared before the params struct
    takes_operands: bool = True  # False: the params already hold the arena addresses
    inputs: list[Operand] = field(default_factory=list)
    output: Operand | None = None
    rings: list[Operand] = field(default_factory=list)  # a pipeline's buffers between its stages
    scratch: Operand | None = None  # the arena scratch the plan gives the kernel, if any
    kernel_choice: str = ""  # for the comment: how the kernel walks this layer, if it has a choice

    @property
    def name(self) -> str:
        return f"layer{self.number}"

    def array(self, role: str, ctype: str, values: np.ndarray) -> ArrayRef:
        """Register a const array for this layer and return a reference to it."""
        symbol = f"{self.name}_{role}"
        self.arrays.append(ConstArray(symbol, ctype, np.ascontiguousarray(values).reshape(-1)))
        return ArrayRef(symbol)


@dataclass(frozen=True)
class Build:
    """What the C is made for. `reference`: whose rounding to follow where TFLite's reference
    kernels and TFLite Micro disagree (only per-channel FULLY_CONNECTED so far), "tflite" or
    "tflm". `variant`: the kernels it will be built with; the SIMD ones also take the
    constants of their fast paths. `fpu`: whether the target core has one (targets.has_fpu);
    without, ONNX models take ONNX Runtime's output stage in integers."""

    reference: str = "tflite"
    variant: Variant = Variant.REF
    fpu: bool = True


def lower(plan: ArenaPlan, reference: str = "tflite", variant: Variant = Variant.REF, fpu: bool = True) -> list[Layer]:
    """The layers of the plan with their params and constants, for Build(reference, variant, fpu)."""
    from .lower_ort import ORT_LOWERINGS  # they build on this module's Layer
    from .lower_ort_mean import FLOAT_MEAN_LOWERINGS

    ort_lowerings = {**ORT_LOWERINGS, **FLOAT_MEAN_LOWERINGS}
    build = Build(reference, variant, fpu)
    layers = []
    for number, op in enumerate(plan.steps):
        if isinstance(op, ir.RowPipeline):
            layer = _pipeline(plan, op, number, build)
        elif op.arithmetic is ir.Arithmetic.ONNXRUNTIME:
            layer = ort_lowerings[type(op)](op, number, build)
        else:
            layer = LOWERINGS[type(op)](op, number, build)
        layer.inputs = [_operand(plan, t) for t in op.activation_inputs()]
        layer.output = _operand(plan, op.output)
        scratch = plan.scratch(op)
        if isinstance(op, ir.FullyConnected):
            choice = choose_fully_connected_kernel(op, variant)
            if (choice is FullyConnectedKernel.STAGED) != (scratch is not None):
                raise ValueError(f"step {number} ({op.describe()}): {choice.value} on the {variant.value} kernels, "
                                 "but the plan was made for other kernels (plan and lower with the same variant)")
            layer.kernel_choice = choice.value
        if scratch is not None:
            layer.scratch = _operand(plan, scratch)
            layer.params["staged_input"] = ArenaAddress(layer.scratch.offset, scratch.ctype)
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


def conv_geometry(op: ir.Conv2D | ir.DepthwiseConv2D) -> dict:
    """The shape fields of a convolution's params, in the structs' order."""
    _, in_h, in_w, in_c = op.input.shape
    _, out_h, out_w, out_c = op.output.shape
    return dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                kernel_h=op.kernel[0], kernel_w=op.kernel[1], stride_h=op.stride[0], stride_w=op.stride[1],
                pad_top=op.padding.top, pad_left=op.padding.left)


def conv_bias(op: ir.Conv2D | ir.DepthwiseConv2D) -> np.ndarray:
    """The bias a convolution row kernel starts from: convolutions fold -x_zp * sum(w) into
    it (padded taps read the zero point); depthwise rows add the offset per tap and keep
    the model's bias."""
    out_c = op.output.shape[-1]
    if isinstance(op, ir.DepthwiseConv2D):
        return _bias_values(op, out_c).astype(np.int32)
    return _folded_bias(op, _row_sums(op.weights.data))


def _conv_stage(op: ir.Conv2D | ir.DepthwiseConv2D, array, variant: Variant) -> tuple[RowKernel, dict]:
    """The row kernel and the conv_params fields of a (depthwise) convolution. The fast
    paths' constants (`scales`, `blocks`) are made only for SIMD kernels (the portable ones
    never read them), and where they are made they replace the arrays they supersede: flash
    is the scarce resource, and the SIMD kernels read `scales` instead of `multiplier` and
    `shift`, and `blocks` instead of all of the per-channel arrays."""
    out_c = op.output.shape[-1]
    depthwise = isinstance(op, ir.DepthwiseConv2D)
    weights = op.weights.data
    bias = conv_bias(op)
    multipliers, shifts = quant.per_channel_multipliers(
        op.input.scale, op.weights.quant.scale, op.output.scale, out_c)
    small = _accumulators_are_small(op, bias, shifts)
    fast = _fast_output(op, bias, multipliers, shifts) if variant.simd else None
    scales = None if fast is None else fast.scales
    if fast is not None:  # some channels' rows want their accumulators to start elsewhere
        bias = fast.kernel_bias(bias).astype(np.int32)
    kernel = choose_row_kernel(op, variant, fast_output_stage=fast is not None)
    activation = _activation_fields(op)
    unsigned = fast is not None and quant.unsigned_rounding(fast, op.output.zero_point, activation["act_min"])
    fields = dict(
        kernel=kernel, **conv_geometry(op),
        input_offset=-op.input.zero_point, **activation, small_accumulators=int(small),
        rounding=OutputRounding.UNSIGNED if unsigned else OutputRounding.SIGNED,
        weights=None, bias=None, multiplier=None, shift=None, scales=None, blocks=None,
    )
    if kernel.layout is not None:
        fields["blocks"] = array("blocks", "int32_t", fast_blocks(op, kernel.layout, bias, fast.scales,
                                                                  fast.kernel_bias, pairs_taps(kernel, op)))
        return kernel, fields
    fields["weights"] = array("weights", "int8_t", weights)
    fields["bias"] = array("bias", "int32_t", bias)
    if scales is not None:
        fields["scales"] = array("scales", "int32_t", scales)
    else:
        fields.update(_requant_fields(op, array, multipliers, shifts))
    return kernel, fields


def fast_blocks(op: ir.Conv2D | ir.DepthwiseConv2D, layout: blocks.BlockLayout, bias: np.ndarray,
                scales: np.ndarray, kernel_bias=lambda bias: bias, paired_taps: bool = False) -> np.ndarray:
    """conv_params.blocks in `layout`, ending in the output stage's rows `scales`. `bias` is
    the one conv_params would hold otherwise (folded for convolutions, the model's for
    depthwise ones), already moved by `kernel_bias` (the output stage's: some of TFLite's
    rows want their accumulators to start elsewhere), which moves the depthwise one here."""
    weights = op.weights.data
    if layout in (blocks.DEPTHWISE_GROUPS, blocks.DEPTHWISE_SIXTEENS):
        # The zero point folded in too: border windows read it.
        folded = kernel_bias(_folded_bias(op, _channel_weights(op).sum(axis=1)))
        if layout is blocks.DEPTHWISE_GROUPS:
            if paired_taps:  # kernels.pairs_taps
                return blocks.depthwise_paired_blocks(2 * folded, weights, scales)
            return blocks.depthwise_blocks(2 * folded, weights, scales)
        return blocks.depthwise_sixteen_blocks(folded, weights, scales)
    if layout is blocks.NARROW_CHANNELS:
        return blocks.narrow_blocks(bias, weights, scales)
    if layout is blocks.WORD_PAIRS:
        return blocks.word_pair_blocks(bias, weights, scales)
    if layout is blocks.FIELD_VECTORS:
        return blocks.field_vector_blocks(bias, weights, scales)
    return blocks.pair_blocks(bias, blocks.padded_rows(weights), scales)


def _accumulators_are_small(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray, shifts: list[int]) -> bool:
    """Whether every accumulator, shifted left by its channel's left shift, stays below 2^30
    in magnitude for any input, so fast kernels may use a 32-bit output stage."""
    bound = accumulator_bounds(op, bias) << np.maximum(np.array(shifts, dtype=np.int64), 0)
    return bool((bound < quant.FAST_ACCUMULATOR_LIMIT).all())


def _channel_weights(op: ir.Conv2D | ir.DepthwiseConv2D) -> np.ndarray:
    """The weights as [channels, taps] int64, a row per output channel."""
    weights = op.weights.data.astype(np.int64)
    if isinstance(op, ir.DepthwiseConv2D):
        return weights.reshape(-1, weights.shape[-1]).T
    return weights.reshape(weights.shape[0], -1)


def accumulator_bounds(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray) -> np.ndarray:
    """Per channel, a bound on the magnitude of the kernels' partial sums starting from `bias`
    (the one conv_params holds)."""
    return np.abs(bias.astype(np.int64)) + _weight_reach(op)


def _weight_reach(op: ir.Conv2D | ir.DepthwiseConv2D) -> np.ndarray:
    """Per channel, how far the kernels' partial sums move from their bias. A convolution
    multiplies raw int8 inputs (|x| <= 128) with its zero point folded into the bias; a
    depthwise one multiplies x - x_zp (|x - x_zp| <= 255), or, in DEPTHWISE_GROUPS, raw
    inputs after a folded bias that may hold 128 * sum(|w|) more: 256 covers both."""
    reach = 256 if isinstance(op, ir.DepthwiseConv2D) else 128
    return np.abs(_channel_weights(op)).sum(axis=1) * reach


def accumulator_ranges(op: ir.Conv2D | ir.DepthwiseConv2D) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the least and greatest accumulator the reference can reach: its bias plus
    each weight times the farthest input difference x - x_zp on either side (a padded tap
    adds 0, which lies between them)."""
    weights = _channel_weights(op)
    below, above = -128 - op.input.zero_point, 127 - op.input.zero_point
    bias = _bias_values(op, weights.shape[0])
    low = bias + np.minimum(weights * below, weights * above).sum(axis=1)
    high = bias + np.maximum(weights * below, weights * above).sum(axis=1)
    return low, high


def _fast_output(op: ir.Conv2D | ir.DepthwiseConv2D, bias: np.ndarray, multipliers: list[int],
                 shifts: list[int]) -> quant.FastOutput | None:
    """The SIMD kernels' output rows, each channel proven on its own accumulator range (see
    quant.fast_channel_rows), or None."""
    low, high = accumulator_ranges(op)
    act_min, act_max = quant.activation_range(op.activation, op.output)
    return quant.fast_channel_rows(multipliers, shifts, op.output.zero_point, act_min, act_max, low, high,
                                   bias, _weight_reach(op))


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
        input_tables=None, output_rounding=0,
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


def _lower_stage(stage: ir.Op, array, build: Build) -> tuple[StageKind, dict, str]:
    """A pipeline stage's kind, its params' fields, and what its comment says of its kernel."""
    variant = build.variant
    if stage.arithmetic is ir.Arithmetic.ONNXRUNTIME:
        from .lower_ort import lower_ort_stage  # it builds on this module

        return lower_ort_stage(stage, array, build)
    if isinstance(stage, ir.Add):
        return StageKind.ADD, _add_fields(stage, row_bytes(stage.output), array if variant.simd else None), ""
    if isinstance(stage, ir.Quantize):  # only the TRANSPOSE of the NCHW input streams (passes/fuse.py)
        _, channels, height, width = stage.input.shape
        return StageKind.TRANSPOSE, dict(channels=channels, height=height, width=width), ""
    kernel, fields = _conv_stage(stage, array, variant)
    return kernel.stage, fields, f", kernel {kernel.name}"


def pipeline_buffers(op: ir.RowPipeline) -> list[ir.Tensor]:
    """The tensors of a pipeline's buffer table, in its order: the C names buffers by index."""
    return op.activation_inputs() + [stage.output for stage in op.stages]


def _pipeline(plan: ArenaPlan, op: ir.RowPipeline, number: int, build: Build) -> Layer:
    """A row pipeline: a params struct per stage, a table of the buffers (whole tensors or
    rings, with their arena addresses) and a table of the stages."""
    layer = Layer(number, op, "pipeline_run", "pipeline", takes_operands=False)
    tensors = pipeline_buffers(op)
    index = {id(t): i for i, t in enumerate(tensors)}
    buffers = []
    for t in tensors:
        buffer = plan.lifetimes.of(t)
        buffers.append(dict(base=ArenaAddress(plan.offset(t)), row_bytes=row_bytes(t),
                            height=tensor_rows(t), slots=buffer.rows))
    layer.rings = [Operand(plan.offset(t), t.ctype, plan.lifetimes.of(t).nbytes) for t in op.internal_tensors()]
    stages = []
    for k, stage in enumerate(op.stages):
        def array(role, ctype, values, k=k):
            return layer.array(f"s{k}_{role}", ctype, values)

        kind, fields, kernel_text = _lower_stage(stage, array, build)
        comment = f"stage {k}: {_stage_summary(stage)}{kernel_text}"
        layer.decls.append(Decl(kind.params_type, f"{layer.name}_s{k}", fields, comment))
        inputs = stage.activation_inputs()
        stages.append(dict(kind=kind, params=DeclRef(f"{layer.name}_s{k}", address=True),
                           input=index[id(inputs[0])], other=index[id(inputs[1])] if len(inputs) > 1 else -1,
                           output=index[id(stage.output)]))
    layer.decls.append(Decl("row_buffer", f"{layer.name}_buffers", buffers,
                            "the pipeline's inputs, then each stage's output (slots < height: a ring)"))
    layer.decls.append(Decl("stage", f"{layer.name}_stages", stages))
    layer.params.update(stages=DeclRef(f"{layer.name}_stages"), stage_count=len(stages),
                        buffers=DeclRef(f"{layer.name}_buffers"), buffer_count=len(buffers))
    return layer


def _fully_connected(op: ir.FullyConnected, number: int, build: Build) -> Layer:
    units, depth = op.weights.shape
    layer = Layer(number, op, "fully_connected_s8", "fully_connected_params")
    layer.params.update(
        rows=op.rows, depth=depth, units=units, single_rounding=int(op.weights.quant.per_channel and build.reference == "tflite"),
        **fully_connected_operands(op, layer.array, build.variant))
    multipliers, shifts = quant.fully_connected_multipliers(
        op.input.scale, op.weights.quant.scale, op.output.scale, units)
    layer.params.update(_requant_fields(op, layer.array, multipliers, shifts))
    return layer


def fully_connected_bias(op: ir.FullyConnected) -> np.ndarray:
    """The bias fully_connected_s8 starts each unit from: -x_zp * sum(w) folded in."""
    return _folded_bias(op, _row_sums(op.weights.data))


def fully_connected_operands(op: ir.FullyConnected, array, variant: Variant) -> dict:
    """fully_connected_params' weights (regrouped in fours for FULLY_CONNECTED_STAGED: instead
    of stored twice) and folded bias, for either arithmetic's output stage."""
    depth = op.weights.shape[1]
    quads = choose_fully_connected_kernel(op, variant) is FullyConnectedKernel.STAGED
    return dict(
        weights=None if quads else array("weights", "int8_t", op.weights.data),
        weight_quads=array("weight_quads", "int32_t", blocks.as_int32_words(blocks.interleaved_quads(op.weights.data)))
        if quads else None,
        staged_input=None,  # lower() points it at the plan's scratch for the op, if any
        bias=array("bias", "int32_t", fully_connected_bias(op)))


def _add(op: ir.Add, number: int, build: Build) -> Layer:
    """An ADD outside any pipeline (e.g. on 2-D tensors): one call over all elements."""
    layer = Layer(number, op, "add_s8", "add_params")
    layer.params.update(_add_fields(op, op.output.size, layer.array if build.variant.simd else None))
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
    layer.scalar_args = [symbol, op.output.size]
    return layer


def _byte_table(op: ir.Op) -> np.ndarray:
    """The 256-entry table of a byte-table op (`ir.is_byte_table`), indexed by the input
    value (+ 128 for an int8 input), as the lookup kernels index it."""
    if isinstance(op, ir.ElementwiseConstant) and op.operation is ir.ConstantOperation.MUL:
        return quant.mul_constant_table(op.input, op.constant, op.output, op.activation)
    if isinstance(op, ir.ElementwiseConstant):
        return quant.add_constant_table(op.input, op.constant, op.output, op.activation, op.constant_first)
    if isinstance(op, ir.Logistic):
        try:
            return quant.logistic_table(op.input, op.output)
        except ValueError as exc:
            raise ModelError(f"op {op.index} (LOGISTIC): {exc}, so TFLite's own table differs between C "
                             "libraries and no C can be proven equal to it") from None
    return quant.requantize_table(op.input, op.output)


def _table_op(op: ir.Op, number: int, build: Build) -> Layer:
    return _table_lookup(op, number, _byte_table(op))


def _table_chain(op: ir.TableChain, number: int, build: Build) -> Layer:
    """One table for the chain: each byte through every stage's table in turn."""
    table = _byte_table(op.stages[0])
    for stage in op.stages[1:]:
        table = _byte_table(stage)[table.astype(np.int64) + (128 if stage.input.dtype == ir.DType.INT8 else 0)]
    return _table_lookup(op, number, table)


def scalar_call(number: int, op: ir.Op, kernel: str, *args) -> Layer:
    """A layer calling a struct-less kernel with these values, then its operands."""
    layer = Layer(number, op, kernel, None)
    layer.scalar_args = list(args)
    return layer


def _quantize(op: ir.Quantize, number: int, build: Build) -> Layer:
    if op.from_nchw:  # a TRANSPOSE of the input runs only as a pipeline's first stage
        raise ModelError(f"op {op.index} (TRANSPOSE): the transposed input must feed a convolution or "
                         "depthwise convolution of batch 1 (the first stage of a row pipeline)")
    if op.input.dtype != "float32":
        return _table_op(op, number, build)
    divisor, invert, offset = quant.float_quantize_constants(op.output.scale, op.output.zero_point)
    return scalar_call(number, op, "quantize_f32_s8", Float32(divisor), invert, offset, op.output.size)


def _dequantize(op: ir.Dequantize, number: int, build: Build) -> Layer:
    return scalar_call(number, op, "dequantize_s8_f32", Double(op.input.scale), op.input.zero_point, op.output.size)


LOWERINGS = {
    ir.FullyConnected: _fully_connected,
    ir.Add: _add,
    ir.Pad: _pad,
    ir.AveragePool2D: _average_pool,
    ir.Mean: _mean,
    ir.Softmax: _softmax,
    ir.Logistic: _table_op,
    ir.ElementwiseConstant: _table_op,
    ir.TableChain: _table_chain,
    ir.Quantize: _quantize,
    ir.Dequantize: _dequantize,
}
