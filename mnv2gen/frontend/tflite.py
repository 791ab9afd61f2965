"""`.tflite` -> IR, validating everything the file claims before anything else trusts it.

Order of work: read the flatbuffer into plain data (`flatbuffer.py`), check indices, types,
shapes, buffer sizes and quantization of every tensor, fold the constant shape arithmetic
the converter leaves behind (`shape_ops.py`), then build one IR op per model op, each with
the checks its kernel relies on. Every failure is a `ModelError` naming the file, the op or
tensor, what was expected and what to do.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

import numpy as np

from .. import ir
from ..errors import ModelError
from .flatbuffer import TENSOR_TYPE_NAMES, TENSOR_TYPES, RawModel, RawOp, RawTensor, read_model
from .model_kind import check_fully_int8, check_supported_ops
from .shape_ops import fold_shape_ops

MAX_RANK = 5
MAX_DIM = 1 << 24
# Every byte offset the generated C computes must fit comfortably in an int32.
MAX_TENSOR_BYTES = 1 << 30
# The arena planner and its byte-level checker work in memory proportional to the total
# activation bytes (16 bytes per arena byte), and weights become C initializers. No
# Cortex-M has a fraction of these, so a model over them is refused before any work.
MAX_ACTIVATION_BYTES = 64 << 20
MAX_CONSTANT_BYTES = 64 << 20
INT32_MAX = 2**31 - 1

ACTIVATIONS = {0: ir.Activation.NONE, 1: ir.Activation.RELU, 2: ir.Activation.RELU_N1_TO_1,
               3: ir.Activation.RELU6}
ACTIVATION_NAMES = {4: "RELU_N1_TO_1", 5: "TANH", 6: "SIGN_BIT"}
PADDING_SAME, PADDING_VALID = 0, 1

INT8, UINT8, INT32, INT64, FLOAT32 = (ir.DType.INT8, ir.DType.UINT8, ir.DType.INT32, ir.DType.INT64,
                                      ir.DType.FLOAT32)
QUANTIZED_8BIT = (INT8, UINT8)
EDGE_DTYPES = (INT8, UINT8, FLOAT32)  # what a graph's input and output may be


def load_tflite(path: str | Path, reference: str = "tflite") -> ir.Graph:
    """Read, validate and convert a .tflite file into a verified IR graph. `reference` is the
    engine the C will equal: "tflm" accepts what TFLite Micro accepts and TFLite refuses."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file: {exc.strerror}", source=source) from None
    raw = read_model(data, source)
    graph = _Builder(raw, reference).build()
    graph.source_sha256 = hashlib.sha256(data).hexdigest()
    return graph


class _Builder:
    def __init__(self, raw: RawModel, reference: str = "tflite"):
        self.raw = raw
        self.source = raw.source
        self.reference = reference

    def fail(self, message: str) -> ModelError:
        return ModelError(message, source=self.source)

    # ---------------------------------------------------------------- structure

    def build(self) -> ir.Graph:
        self._check_structure()
        check_fully_int8(self.raw, self.fail)
        check_supported_ops(self.raw, SUPPORTED_OPS, self.fail, constant_only=CONSTANT_ONLY_OPS)
        tensors = [self._tensor(t) for t in self.raw.tensors]
        self._check_totals(tensors)
        ops = fold_shape_ops(self.raw.ops, tensors, self.fail)
        graph_input, graph_output = self._io(tensors)
        ir_ops = [self._op(op, tensors) for op in ops]
        for op in ir_ops:
            self._check_rescales(op)
        graph = ir.Graph(ops=ir_ops, input=graph_input, output=graph_output, source=self.source)
        try:
            graph.verify()
        except ir.IRError as exc:
            raise self.fail(f"the graph is inconsistent: {exc}") from None
        return graph

    def _check_structure(self) -> None:
        raw = self.raw
        if raw.version != 3:
            raise self.fail(f"schema version {raw.version}; only version 3 (current TFLite) is read")
        if raw.subgraph_count != 1:
            raise self.fail(f"the model has {raw.subgraph_count} subgraphs (control flow or "
                            "signatures with several graphs); only single-graph models are supported")
        n = len(raw.tensors)
        for op in raw.ops:
            for role, indices in (("input", op.inputs), ("output", op.outputs)):
                for i in indices:
                    if not (-1 <= i < n) or (i == -1 and role == "output"):
                        raise self.fail(f"op {op.index} ({op.name}) has {role} tensor index {i}, "
                                        f"but the model has {n} tensors")
        for role, indices in (("input", raw.inputs), ("output", raw.outputs)):
            for i in indices:
                if not 0 <= i < n:
                    raise self.fail(f"graph {role} index {i} is out of range (0..{n - 1})")
        self._check_dataflow()

    def _check_dataflow(self) -> None:
        """Ops run in file order, so each tensor has at most one producer, which comes before
        every reader; anything else is a cycle (or an order no interpreter could run)."""
        raw = self.raw
        producer: dict[int, RawOp] = {}
        for op in raw.ops:
            for i in op.outputs:
                if i in producer:
                    first = producer[i]
                    raise self.fail(f"tensor {i} ({raw.tensors[i].name!r}) is written by ops "
                                    f"{first.index} ({first.name}) and {op.index} ({op.name}); "
                                    "each tensor must have one producer")
                if i in raw.inputs:
                    raise self.fail(f"the graph input, tensor {i} ({raw.tensors[i].name!r}), is "
                                    f"overwritten by op {op.index} ({op.name})")
                producer[i] = op
        for op in raw.ops:
            for i in op.inputs:
                source = producer.get(i)
                if source is None or source.index < op.index:
                    continue
                what = ("its own output" if source is op
                        else f"tensor {i}, produced by op {source.index} ({source.name}) after it")
                raise self.fail(f"op {op.index} ({op.name}) reads {what}: the graph has a cycle "
                                "or its ops are not in execution order; re-export the model with "
                                "the TFLite converter")

    def _tensor(self, t: RawTensor) -> ir.Tensor:
        where = f"tensor {t.index} ({t.name!r})"
        if t.type_code not in TENSOR_TYPES:
            name = TENSOR_TYPE_NAMES.get(t.type_code, str(t.type_code))
            raise self.fail(f"{where} has element type {name}; supported: "
                            f"{', '.join(TENSOR_TYPES.values())}")
        dtype = TENSOR_TYPES[t.type_code]
        shape = tuple(t.shape)
        if len(shape) > MAX_RANK or any(not 1 <= d <= MAX_DIM for d in shape):
            raise self.fail(f"{where} has shape {list(shape)}; expected up to {MAX_RANK} "
                            f"dimensions, each from 1 to {MAX_DIM}")
        tensor = ir.Tensor(name=t.name, shape=shape, dtype=dtype, index=t.index)
        # Python integers: numpy's int64 product of five dims up to 2**24 would wrap.
        nbytes = math.prod(shape) * tensor.itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise self.fail(f"{where} has shape {list(shape)}, {nbytes} bytes; tensors over "
                            f"{MAX_TENSOR_BYTES} bytes cannot be addressed safely with the "
                            "int32 offsets of the generated C")
        tensor.data = self._constant_data(t, tensor, where)
        tensor.quant = self._quantization(t, tensor, where)
        return tensor

    def _check_totals(self, tensors: list[ir.Tensor]) -> None:
        used = {i for op in self.raw.ops for i in op.inputs + op.outputs if i >= 0}
        used |= set(self.raw.inputs) | set(self.raw.outputs)
        activation = sum(tensors[i].nbytes for i in used if not tensors[i].is_constant)
        constant = sum(t.nbytes for t in tensors if t.is_constant)
        for what, total, limit in (("activation", activation, MAX_ACTIVATION_BYTES),
                                   ("constant (weight)", constant, MAX_CONSTANT_BYTES)):
            if total > limit:
                raise self.fail(f"the model's {what} tensors total {total:,} bytes, over "
                                f"mnv2gen's limit of {limit:,}; no microcontroller has that much "
                                "memory, so this is not a model mnv2gen can compile")

    def _check_rescales(self, op: ir.Op) -> None:
        """Refuse requantization factors the int32 fixed-point kernels cannot express:
        TFLite's MultiplyByQuantizedMultiplier shifts the accumulator left by log2 of the
        factor, which overflows (undefined behaviour in TFLite and in C) long before 2**16."""
        for what, factor in _rescales(op):
            if not factor < MAX_RESCALE:
                raise self.fail(f"op {op.index} ({op.op_name}): the {what} rescale factor is "
                                f"{factor:.3g}, over {MAX_RESCALE}; the int32 fixed-point arithmetic "
                                "would overflow. Check the input, weight and output scales")

    def _constant_data(self, t: RawTensor, tensor: ir.Tensor, where: str) -> np.ndarray | None:
        if not 0 <= t.buffer < len(self.raw.buffers):
            raise self.fail(f"{where} refers to buffer {t.buffer}, but the model has "
                            f"{len(self.raw.buffers)} buffers")
        blob = self.raw.buffers[t.buffer]
        if blob is None:
            return None
        if len(blob) != tensor.nbytes:
            raise self.fail(f"{where} has shape {list(tensor.shape)} of {tensor.dtype} "
                            f"({tensor.nbytes} bytes) but its buffer holds {len(blob)} bytes")
        numpy_type = np.dtype(ir.DTYPES[tensor.dtype][0]).newbyteorder("<")
        return np.frombuffer(blob, dtype=numpy_type).reshape(tensor.shape).astype(numpy_type.newbyteorder("="))

    def _quantization(self, t: RawTensor, tensor: ir.Tensor, where: str) -> ir.Quantization | None:
        q = t.quant
        if q is None:
            if tensor.dtype in QUANTIZED_8BIT:
                raise self.fail(f"{where} is {tensor.dtype} but has no quantization parameters; "
                                "export a fully int8-quantized model")
            return None
        scales = [float(s) for s in q.scale]
        if not all(math.isfinite(s) and s > 0 for s in scales):
            bad = next(s for s in scales if not (math.isfinite(s) and s > 0))
            raise self.fail(f"{where} has quantization scale {bad}; scales must be finite and > 0")
        zero_points = [int(z) for z in q.zero_point]
        if len(zero_points) == 0:
            zero_points = [0] * len(scales)
        if len(zero_points) != len(scales):
            raise self.fail(f"{where} has {len(scales)} scales but {len(zero_points)} zero points")
        axis = q.axis
        if len(scales) > 1 and not (0 <= axis < len(tensor.shape) and tensor.shape[axis] == len(scales)):
            if not self._ignored_bias_axis(tensor, len(scales), where, axis):
                raise self.fail(f"{where} has {len(scales)} per-channel scales on axis {axis}, "
                                f"which does not match its shape {list(tensor.shape)}")
            axis = 0
        low, high = {INT8: (-128, 127), UINT8: (0, 255)}.get(tensor.dtype, (-(2**31), 2**31 - 1))
        if any(not low <= z <= high for z in zero_points):
            bad = next(z for z in zero_points if not low <= z <= high)
            raise self.fail(f"{where} has zero point {bad}, outside the {tensor.dtype} range "
                            f"{low}..{high}")
        return ir.Quantization(tuple(scales), tuple(zero_points), axis)

    def _ignored_bias_axis(self, tensor: ir.Tensor, scales: int, where: str, axis: int) -> bool:
        """A 1-D int32 bias with one scale per channel but an out-of-range axis, as in TFLite
        Micro's own person_detect.tflite: TFLite refuses to load it, TFLite Micro ignores the
        axis (and the bias's scales: the kernels use input scale x weight scale). Accepted
        when the C is to equal TFLite Micro; otherwise refused with the flag that accepts it."""
        if not (tensor.dtype == INT32 and tensor.shape == (scales,) and tensor.is_constant):
            return False
        if self.reference == "tflm":
            return True
        raise self.fail(f"{where}, a bias, has its per-channel quantization on axis {axis}, out of range "
                        "for a 1-D tensor: TFLite refuses to load such a model, and TFLite Micro ignores "
                        "the axis (its example person_detect.tflite has it). Compile with --reference tflm "
                        "to accept it and equal TFLite Micro")

    def _io(self, tensors: list[ir.Tensor]) -> tuple[ir.Tensor, ir.Tensor]:
        raw = self.raw
        if len(raw.inputs) != 1 or len(raw.outputs) != 1:
            raise self.fail(f"the model has {len(raw.inputs)} inputs and {len(raw.outputs)} "
                            "outputs; mnv2gen compiles models with exactly one of each")
        graph_input, graph_output = tensors[raw.inputs[0]], tensors[raw.outputs[0]]
        if graph_input.is_constant:
            raise self.fail(f"the graph input {graph_input.name!r} is a constant")
        if graph_input.dtype not in EDGE_DTYPES:
            raise self.fail(f"the graph input is {graph_input.dtype}; expected int8, uint8 or float32")
        if graph_output.dtype not in EDGE_DTYPES:
            raise self.fail(f"the graph output is {graph_output.dtype}; expected int8, uint8 or float32")
        if len(graph_input.shape) == 4 and graph_input.shape[0] != 1:
            raise self.fail(f"the input has batch size {graph_input.shape[0]}; mnv2gen compiles "
                            "for batch 1 (re-export with batch 1 or a dynamic batch)")
        return graph_input, graph_output

    # ---------------------------------------------------------------- ops

    def _op(self, op: RawOp, tensors: list[ir.Tensor]) -> ir.Op:
        builder = OP_BUILDERS.get(op.name)
        if builder is None:
            raise self.fail(f"op {op.index} is {op.name}, which mnv2gen does not support. "
                            f"Supported ops: {', '.join(sorted(SUPPORTED_OPS))}")
        return builder(_OpContext(self, op, tensors))


class _OpContext:
    """What one op builder needs: its tensors, its options and a way to fail clearly."""

    def __init__(self, builder: _Builder, op: RawOp, tensors: list[ir.Tensor]):
        self.op = op
        self.builder = builder
        self.tensors = tensors
        self.where = f"op {op.index} ({op.name})"

    def fail(self, message: str) -> ModelError:
        return self.builder.fail(f"{self.where}: {message}")

    def option(self, name: str, default):
        return self.op.option(name, default)

    def input(self, position: int, *, optional: bool = False) -> ir.Tensor | None:
        if position >= len(self.op.inputs) or self.op.inputs[position] == -1:
            if optional:
                return None
            raise self.fail(f"expected at least {position + 1} inputs, found {len(self.op.inputs)}")
        return self.tensors[self.op.inputs[position]]

    def output(self) -> ir.Tensor:
        if len(self.op.outputs) != 1:
            raise self.fail(f"expected 1 output, found {len(self.op.outputs)}")
        return self.tensors[self.op.outputs[0]]

    def activation(self, t: ir.Tensor, role: str, dtypes=(INT8,), rank: int | None = None) -> ir.Tensor:
        if t.is_constant:
            raise self.fail(f"{role} {t.name!r} is a constant; constant-folding it is not supported")
        self._check_type(t, role, dtypes, rank)
        if t.dtype in QUANTIZED_8BIT and t.quant.per_channel:
            raise self.fail(f"{role} {t.name!r} is quantized per channel; activations must be per tensor")
        return t

    def constant(self, t: ir.Tensor, role: str, dtypes, rank: int | None = None) -> ir.Tensor:
        if not t.is_constant:
            raise self.fail(f"{role} {t.name!r} is not a constant; only constant {role}s are supported")
        self._check_type(t, role, dtypes, rank)
        return t

    def _check_type(self, t: ir.Tensor, role: str, dtypes, rank: int | None) -> None:
        if t.dtype not in dtypes:
            raise self.fail(f"{role} {t.name!r} is {t.dtype}; expected {' or '.join(dtypes)}")
        if rank is not None and len(t.shape) != rank:
            raise self.fail(f"{role} {t.name!r} has shape {list(t.shape)}; expected rank {rank}")

    def fused_activation(self) -> ir.Activation:
        code = self.option("FusedActivationFunction", 0)
        if code not in ACTIVATIONS:
            raise self.fail(f"fused activation {ACTIVATION_NAMES.get(code, code)} is not supported; "
                            "supported: NONE, RELU, RELU6, RELU_N1_TO_1")
        return ACTIVATIONS[code]

    def stride(self) -> tuple[int, int]:
        stride = (self.option("StrideH", 1), self.option("StrideW", 1))
        if not all(1 <= s <= 64 for s in stride):
            raise self.fail(f"stride {stride} is out of range; expected 1..64")
        return stride

    def padding(self, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]) -> ir.Padding:
        code = self.option("Padding", PADDING_SAME)
        if code == PADDING_VALID:
            if kernel[0] > in_hw[0] or kernel[1] > in_hw[1]:
                raise self.fail(f"VALID padding with a {kernel} window on a {in_hw} input leaves no output")
            return ir.Padding()
        if code != PADDING_SAME:
            raise self.fail(f"unknown padding code {code}")
        top, bottom = ir.same_padding(in_hw[0], kernel[0], stride[0])
        left, right = ir.same_padding(in_hw[1], kernel[1], stride[1])
        return ir.Padding(top=top, bottom=bottom, left=left, right=right)

    def no_dilation(self) -> None:
        dilation = (self.option("DilationHFactor", 1), self.option("DilationWFactor", 1))
        if dilation != (1, 1):
            raise self.fail(f"dilation {dilation} is not supported; only dilation 1")

    def symmetric_weights(self, weights: ir.Tensor, axis: int) -> None:
        if weights.quant is None:
            raise self.fail(f"weights {weights.name!r} have no quantization parameters")
        if any(z != 0 for z in weights.quant.zero_point):
            raise self.fail(f"weights {weights.name!r} have a non-zero zero point; int8 weights "
                            "must be symmetric (zero point 0), as the TFLite converter makes them")
        if weights.quant.per_channel and weights.quant.axis != axis:
            raise self.fail(f"weights {weights.name!r} are quantized along axis "
                            f"{weights.quant.axis}; expected axis {axis}")

    def bias(self, position: int, channels: int) -> ir.Tensor | None:
        bias = self.input(position, optional=True)
        if bias is None:
            return None
        self.constant(bias, "bias", (INT32,))
        if bias.size != channels:
            raise self.fail(f"bias {bias.name!r} has {bias.size} values for {channels} output channels")
        return bias


MAX_RESCALE = float(1 << 16)


def _rescales(op: ir.Op) -> list[tuple[str, float]]:
    """(what, real factor) for each requantization the op's kernel performs."""
    if isinstance(op, (ir.Conv2D, ir.DepthwiseConv2D, ir.FullyConnected)):
        factor = op.input.scale * max(op.weights.quant.scale) / op.output.scale
        return [("input * weight / output scale", factor)]
    if isinstance(op, ir.ElementwiseConstant) and op.operation is ir.ConstantOperation.MUL:
        return [("input * constant / output scale", op.input.scale * op.constant.scale / op.output.scale)]
    if isinstance(op, ir.ElementwiseConstant):
        return [("input / output scale", op.input.scale / op.output.scale),
                ("constant / output scale", op.constant.scale / op.output.scale)]
    if isinstance(op, ir.Add):
        return [("first input / output scale", op.input.scale / op.output.scale),
                ("second input / output scale", op.other.scale / op.output.scale)]
    if isinstance(op, (ir.Quantize, ir.Mean, ir.AveragePool2D)) and op.input.quant is not None:
        return [("input / output scale", op.input.scale / op.output.scale)]
    return []


def _check_accumulator(ctx: _OpContext, x: ir.Tensor, w: ir.Tensor, bias: ir.Tensor | None,
                       channel_axis: int) -> None:
    """Every channel's int32 sum must stay in range for any input: the kernel (and TFLite)
    accumulate in int32, and a signed overflow is undefined behaviour in C. |x - zp| <= 255,
    and folding the zero point into the bias moves at most another 128 * sum|w| around,
    so 256 * sum|w| + |bias| bounds every order of summation."""
    weights = np.moveaxis(np.abs(w.data.astype(np.int64)), channel_axis, 0).reshape(w.shape[channel_axis], -1)
    worst = 256 * weights.sum(axis=1)
    if bias is not None:
        worst = worst + np.abs(bias.data.astype(np.int64)).reshape(-1)
    channel = int(np.argmax(worst))
    if worst[channel] > INT32_MAX:
        raise ctx.fail(f"weights {w.name!r}: output channel {channel} sums {weights.shape[1]} "
                       f"products and can reach {int(worst[channel]):,}, which would overflow the int32 "
                       "accumulator (in TFLite too); the layer is too deep or its weights too large")


def _convolution(ctx: _OpContext, depthwise: bool) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", rank=4)
    w = ctx.constant(ctx.input(1), "weights", (INT8,), rank=4)
    out = ctx.activation(ctx.output(), "output", rank=4)
    ctx.no_dilation()
    if depthwise:
        if w.shape[0] != 1 or w.shape[3] != x.shape[3] or out.shape[3] != x.shape[3]:
            raise ctx.fail(f"weights {list(w.shape)} on input {list(x.shape)}: only depth "
                           "multiplier 1 is supported (weights [1, kh, kw, channels])")
        ctx.symmetric_weights(w, axis=3)
        channels, cls = w.shape[3], ir.DepthwiseConv2D
    else:
        if w.shape[3] != x.shape[3]:
            raise ctx.fail(f"weights {list(w.shape)} expect {w.shape[3]} input channels, the input "
                           f"{list(x.shape)} has {x.shape[3]} (grouped convolution is not supported)")
        ctx.symmetric_weights(w, axis=0)
        channels, cls = w.shape[0], ir.Conv2D
    stride = ctx.stride()
    kernel = (w.shape[1], w.shape[2])
    padding = ctx.padding((x.shape[1], x.shape[2]), kernel, stride)
    bias = ctx.bias(2, channels)
    _check_accumulator(ctx, x, w, bias, channel_axis=3 if depthwise else 0)
    return cls(input=x, output=out, index=ctx.op.index, weights=w, bias=bias,
               stride=stride, padding=padding, activation=ctx.fused_activation())


def _fully_connected(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input")
    w = ctx.constant(ctx.input(1), "weights", (INT8,), rank=2)
    out = ctx.activation(ctx.output(), "output")
    if ctx.option("WeightsFormat", 0) != 0:
        raise ctx.fail("shuffled weight formats are not supported")
    ctx.symmetric_weights(w, axis=0)
    if x.size % w.shape[1]:
        raise ctx.fail(f"input {list(x.shape)} does not split into rows of {w.shape[1]} values")
    bias = ctx.bias(2, w.shape[0])
    _check_accumulator(ctx, x, w, bias, channel_axis=0)
    return ir.FullyConnected(input=x, output=out, index=ctx.op.index, weights=w,
                             bias=bias, activation=ctx.fused_activation(),
                             keep_num_dims=bool(ctx.option("KeepNumDims", False)))


def _add(ctx: _OpContext) -> ir.Op:
    if ctx.input(0).is_constant or ctx.input(1).is_constant:
        return _with_constant(ctx, ir.ConstantOperation.ADD)
    a = ctx.activation(ctx.input(0), "first input")
    b = ctx.activation(ctx.input(1), "second input")
    out = ctx.activation(ctx.output(), "output")
    if a.shape != b.shape or a.shape != out.shape:
        raise ctx.fail(f"inputs {list(a.shape)} and {list(b.shape)}: broadcasting is not supported")
    return ir.Add(input=a, other=b, output=out, index=ctx.op.index, activation=ctx.fused_activation())


def _mul(ctx: _OpContext) -> ir.Op:
    if not (ctx.input(0).is_constant or ctx.input(1).is_constant):
        raise ctx.fail("MUL of two activations is not supported; only MUL by a one-element constant "
                       "(as a Keras Rescaling layer makes)")
    return _with_constant(ctx, ir.ConstantOperation.MUL)


def _with_constant(ctx: _OpContext, operation: ir.ConstantOperation) -> ir.Op:
    """MUL or ADD of an activation and a broadcast one-element int8 constant."""
    constant_first = ctx.input(0).is_constant
    c = ctx.constant(ctx.input(0 if constant_first else 1), "constant operand", (INT8,))
    x = ctx.activation(ctx.input(1 if constant_first else 0), "input")
    out = ctx.activation(ctx.output(), "output")
    if c.size != 1:
        raise ctx.fail(f"constant {c.name!r} has shape {list(c.shape)}; only a one-element constant "
                       f"(broadcast to every element) is supported in {operation.value}")
    if c.quant is None or c.quant.per_channel:
        raise ctx.fail(f"constant {c.name!r} needs one scale and zero point")
    if out.shape != x.shape:
        raise ctx.fail(f"output {list(out.shape)} differs from the input {list(x.shape)}; "
                       "only the constant may be broadcast")
    return ir.ElementwiseConstant(input=x, output=out, index=ctx.op.index, operation=operation,
                                  constant=c, constant_first=constant_first,
                                  activation=ctx.fused_activation())


def _pad(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", rank=4)
    pads = ctx.constant(ctx.input(1), "paddings", (INT32, INT64))
    out = ctx.activation(ctx.output(), "output", rank=4)
    if pads.shape != (4, 2):
        raise ctx.fail(f"paddings have shape {list(pads.shape)}; expected [4, 2]")
    p = pads.data.astype(np.int64)
    if p[0].any() or p[3].any() or (p < 0).any() or (p > 1024).any():
        raise ctx.fail(f"paddings {p.tolist()}: only non-negative height/width padding is supported")
    if x.quant != out.quant:
        raise ctx.fail("input and output quantization differ; PAD must keep the quantization")
    padding = ir.Padding(top=int(p[1, 0]), bottom=int(p[1, 1]), left=int(p[2, 0]), right=int(p[2, 1]))
    return ir.Pad(input=x, output=out, index=ctx.op.index, padding=padding)


def _mean(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", rank=4)
    axes = ctx.constant(ctx.input(1), "axes", (INT32, INT64))
    out = ctx.activation(ctx.output(), "output")
    normalized = sorted({int(a) % 4 for a in axes.data.reshape(-1)})
    if normalized != [1, 2] or any(not -4 <= int(a) < 4 for a in axes.data.reshape(-1)):
        raise ctx.fail(f"MEAN over axes {axes.data.reshape(-1).tolist()}; only the mean over height "
                       "and width (axes [1, 2]) is supported")
    if 256 * x.shape[1] * x.shape[2] > INT32_MAX:  # the int32 sum of |x - zp| <= 255 values
        raise ctx.fail(f"MEAN over {x.shape[1]}x{x.shape[2]} values could overflow its int32 sum")
    return ir.Mean(input=x, output=out, index=ctx.op.index, keep_dims=bool(ctx.option("KeepDims", False)))


def _average_pool(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", rank=4)
    out = ctx.activation(ctx.output(), "output", rank=4)
    if x.quant != out.quant:
        raise ctx.fail("input and output quantization differ; TFLite's int8 AVERAGE_POOL_2D "
                       "requires them equal")
    window = (ctx.option("FilterHeight", 1), ctx.option("FilterWidth", 1))
    if not all(1 <= k <= 256 for k in window):
        raise ctx.fail(f"pool window {window} is out of range; expected 1..256")
    stride = ctx.stride()
    padding = ctx.padding((x.shape[1], x.shape[2]), window, stride)
    return ir.AveragePool2D(input=x, output=out, index=ctx.op.index, filter=window, stride=stride,
                            padding=padding, activation=ctx.fused_activation())


def _reshape(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", dtypes=EDGE_DTYPES)
    out = ctx.activation(ctx.output(), "output", dtypes=(x.dtype,))
    if x.nbytes != out.nbytes:
        raise ctx.fail(f"reshapes {list(x.shape)} into {list(out.shape)}: the element counts differ")
    if x.quant != out.quant:
        raise ctx.fail("input and output quantization differ; a reshape must keep it")
    return ir.Reshape(input=x, output=out, index=ctx.op.index)


def _check_probability_output(ctx: _OpContext, out: ir.Tensor) -> None:
    # TFLite's int8 SOFTMAX and LOGISTIC kernels only accept this output quantization.
    if out.zero_point != -128 or out.scale != float(np.float32(1 / 256)):
        raise ctx.fail(f"output scale {out.scale} and zero point {out.zero_point}; TFLite requires "
                       "scale 1/256 and zero point -128 for int8 probabilities")


def _softmax(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input")
    if not x.shape:  # TFLite needs a last axis to normalize over
        raise ctx.fail(f"input {x.name!r} is a scalar; SOFTMAX needs at least one dimension")
    out = ctx.activation(ctx.output(), "output")
    _check_probability_output(ctx, out)
    beta = float(ctx.option("Beta", 1.0))
    if not math.isfinite(beta) or beta <= 0:
        raise ctx.fail(f"softmax beta {beta}; expected a finite positive number")
    # TFLite turns beta * scale into a fixed-point multiplier with
    # QuantizeMultiplierGreaterThanOne, which asserts that it exceeds 1: below that, input
    # differences are too small to tell apart and TFLite aborts the process at Prepare.
    real = float(np.float32(beta)) * x.scale * float(1 << 26)
    if real <= 1.0:
        raise ctx.fail(f"input scale {x.scale:.3g} times beta {beta:g} is below 2**-26, so distinct "
                       "inputs would be indistinguishable; TFLite's int8 SOFTMAX refuses such a "
                       "model (it aborts), so mnv2gen has no reference to equal. Re-quantize the "
                       "model with a representative data set")
    return ir.Softmax(input=x, output=out, index=ctx.op.index, beta=beta)


def _logistic(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input")
    out = ctx.activation(ctx.output(), "output")
    _check_probability_output(ctx, out)
    return ir.Logistic(input=x, output=out, index=ctx.op.index)


def _quantize(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", dtypes=(FLOAT32, UINT8, INT8))
    out = ctx.activation(ctx.output(), "output", dtypes=QUANTIZED_8BIT)
    if x.dtype == FLOAT32 and out.dtype != INT8:
        raise ctx.fail("QUANTIZE from float32 must produce int8")
    return ir.Quantize(input=x, output=out, index=ctx.op.index)


def _transpose(ctx: _OpContext) -> ir.Op:
    """TRANSPOSE of the model's NCHW input to NHWC (perm [0, 2, 3, 1]), as litert-torch writes
    it for a PyTorch model. The input keeps its NCHW layout (the C's input is the model's) and
    the transposition becomes what an ONNX model's QuantizeLinear of its NCHW input is: a
    QUANTIZE from NCHW, here with the same quantization (a copy), run by the first pipeline's
    first stage, row y of every plane at a time. Any other TRANSPOSE is refused."""
    x = ctx.input(0)
    perm = ctx.constant(ctx.input(1), "perm", (INT32, INT64))
    out = ctx.output()
    perm_values = [int(v) for v in perm.data.reshape(-1)]
    if perm_values != [0, 2, 3, 1] or x.index != ctx.builder.raw.inputs[0] or len(x.shape) != 4:
        where = "the model's input" if x.index == ctx.builder.raw.inputs[0] else f"tensor {x.name!r}"
        raise ctx.fail(f"TRANSPOSE of {where} with perm {perm_values[:8]}: only a TRANSPOSE of the model's "
                       "4-D input from NCHW to NHWC (perm [0, 2, 3, 1], as litert-torch writes it) is supported")
    x = ctx.activation(x, "input", rank=4)
    out = ctx.activation(out, "output", rank=4)
    if x.quant != out.quant:
        raise ctx.fail("input and output quantization differ; TRANSPOSE must keep the quantization")
    x.layout = ir.Layout.NCHW
    return ir.Quantize(input=x, output=out, index=ctx.op.index)


def _dequantize(ctx: _OpContext) -> ir.Op:
    x = ctx.activation(ctx.input(0), "input", dtypes=(INT8,))
    out = ctx.activation(ctx.output(), "output", dtypes=(FLOAT32,))
    return ir.Dequantize(input=x, output=out, index=ctx.op.index)


OP_BUILDERS: dict[str, Callable[[_OpContext], ir.Op]] = {
    "CONV_2D": lambda ctx: _convolution(ctx, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda ctx: _convolution(ctx, depthwise=True),
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "MUL": _mul,
    "PAD": _pad,
    "MEAN": _mean,
    "AVERAGE_POOL_2D": _average_pool,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "SOFTMAX": _softmax,
    "LOGISTIC": _logistic,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "TRANSPOSE": _transpose,
}
SUPPORTED_OPS = set(OP_BUILDERS) | {"SHAPE", "STRIDED_SLICE", "PACK"}
CONSTANT_ONLY_OPS = {"MUL"}  # of an activation and a constant only
