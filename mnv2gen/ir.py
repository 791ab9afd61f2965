"""The intermediate representation: typed tensors and one class per op.

The frontend builds a `Graph` from an untrusted model and validates it; passes rewrite it;
the planner and the code generator only read it. `Graph.verify()` re-checks every structural
invariant, so each pass can prove it left a valid graph behind.

Layout is always NHWC (TFLite's). Activation tensors are int8 except at the graph's edges,
where QUANTIZE/DEQUANTIZE convert from/to uint8 or float32 (an ONNX model's QUANTIZE also
transposes its NCHW float input). Each op says whose integer arithmetic it follows
(`Arithmetic`): the same graph shape, two different output stages.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

class DType(enum.StrEnum):
    """An element type we can meet. A str enum: it equals and prints as its name ("int8"),
    so JSON, templates and messages are unchanged while the code names DType.INT8."""

    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"

    @property
    def numpy_type(self) -> type:
        return DTYPES[self][0]

    @property
    def ctype(self) -> str:
        return DTYPES[self][1]


# Each element type's numpy type and C type.
DTYPES: dict[DType, tuple[type, str]] = {
    DType.INT8: (np.int8, "int8_t"),
    DType.UINT8: (np.uint8, "uint8_t"),
    DType.INT16: (np.int16, "int16_t"),
    DType.INT32: (np.int32, "int32_t"),
    DType.INT64: (np.int64, "int64_t"),
    DType.FLOAT32: (np.float32, "float"),
}


ITEMSIZES = {dtype: np.dtype(numpy_type).itemsize for dtype, (numpy_type, _) in DTYPES.items()}


class IRError(Exception):
    """An invariant of the IR does not hold (raised by `Graph.verify`)."""


class Layout(enum.Enum):
    """How a 4-D activation's bytes are ordered. Every tensor the kernels compute is NHWC;
    only an ONNX model's float input is NCHW, and a QUANTIZE transposes it on the way in."""

    NHWC = "nhwc"
    NCHW = "nchw"


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point).

    Scales are kept as the float32 values stored in the model (as Python floats), because
    TFLite derives every multiplier from exactly those values.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0
    # The model stores q + model_offset: an ONNX model's uint8 activations are kept as int8
    # (q = stored - 128, zero point likewise), which every integer op is invariant to except
    # ONNX Runtime's ADD, whose float arithmetic sees the stored values.
    model_offset: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType  # a name ("int8") is accepted and made a DType
    quant: Quantization | None = None
    data: np.ndarray | None = None  # constant (weights, bias, shapes); None for activations
    index: int = -1  # index in the source model, used to trace against TFLite
    layout: Layout = Layout.NHWC

    def __post_init__(self) -> None:
        self.dtype = DType(self.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # Python integers: exact, and fast for the planner's many calls

    @property
    def itemsize(self) -> int:
        return ITEMSIZES[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def ctype(self) -> str:
        return self.dtype.ctype

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> float:
        """The per-tensor scale (activations are always per-tensor)."""
        assert self.quant is not None and not self.quant.per_channel, self.name
        return self.quant.scale[0]

    @property
    def zero_point(self) -> int:
        assert self.quant is not None, self.name
        return self.quant.zero_point[0]

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.shape}, {self.dtype})"


class Arithmetic(enum.Enum):
    """Whose rounding an op reproduces. TFLite's requantizes in gemmlowp fixed point; ONNX
    Runtime's (x86-64 CPU provider) in float32 with two roundings, its ADD with fused
    multiply-adds, its QuantizeLinear with a true division. They differ on about 0.2% of
    convolution outputs from the same accumulators, so an op carries which one it owes."""

    TFLITE = "tflite"
    ONNXRUNTIME = "onnxruntime"


class Reference(enum.StrEnum):
    """Whose outputs a .tflite model's C equals where TFLite's reference kernels and TFLite
    Micro round differently (per-channel FULLY_CONNECTED heads). A str, so the command
    line's names compare equal."""

    TFLITE = "tflite"
    TFLM = "tflm"


class Activation(enum.Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"
    RELU_N1_TO_1 = "relu_n1_to_1"


@dataclass(frozen=True)
class Padding:
    """Explicit spatial padding, already resolved from SAME/VALID."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


def conv_output_size(in_size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    return (in_size + pad_before + pad_after - kernel) // stride + 1


def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite's SAME padding: the extra odd pixel goes after (bottom/right)."""
    out = (in_size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------- ops


@dataclass(eq=False)
class Op:
    """Base of every op. `index` is the operator's position in the source model."""

    input: Tensor
    output: Tensor
    index: int
    arithmetic: Arithmetic = Arithmetic.TFLITE

    op_name = "OP"

    def activation_inputs(self) -> list[Tensor]:
        return [self.input]

    def constants(self) -> list[Tensor]:
        return []

    def expected_output_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def macs(self) -> int:
        return 0

    def describe(self) -> str:
        ins = " + ".join("x".join(map(str, t.shape)) for t in self.activation_inputs())
        return f"{self.op_name} {ins} -> {'x'.join(map(str, self.output.shape))}"


@dataclass(eq=False)
class _Convolution(Op):
    weights: Tensor = None  # type: ignore[assignment]
    bias: Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: Padding = Padding()
    activation: Activation = Activation.NONE

    def constants(self) -> list[Tensor]:
        return [self.weights] + ([self.bias] if self.bias is not None else [])

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weights.shape[1], self.weights.shape[2]

    def expected_output_shape(self) -> tuple[int, ...]:
        n, h, w, _ = self.input.shape
        kh, kw = self.kernel
        oh = conv_output_size(h, kh, self.stride[0], self.padding.top, self.padding.bottom)
        ow = conv_output_size(w, kw, self.stride[1], self.padding.left, self.padding.right)
        return (n, oh, ow, self.out_channels)

    @property
    def out_channels(self) -> int:
        raise NotImplementedError


@dataclass(eq=False)
class Conv2D(_Convolution):
    """weights: [out_c, kh, kw, in_c] int8; bias: [out_c] int32."""

    op_name = "CONV_2D"

    @property
    def out_channels(self) -> int:
        return self.weights.shape[0]

    def macs(self) -> int:
        _, kh, kw, ic = self.weights.shape
        return self.output.size * kh * kw * ic


@dataclass(eq=False)
class DepthwiseConv2D(_Convolution):
    """weights: [1, kh, kw, channels] int8 (depth multiplier 1); bias: [channels] int32."""

    op_name = "DEPTHWISE_CONV_2D"

    @property
    def out_channels(self) -> int:
        return self.weights.shape[3]

    def macs(self) -> int:
        _, kh, kw, _ = self.weights.shape
        return self.output.size * kh * kw


@dataclass(eq=False)
class FullyConnected(Op):
    """input: [rows, depth] (any shape whose last dim is depth); weights [units, depth]."""

    weights: Tensor = None  # type: ignore[assignment]
    bias: Tensor | None = None
    activation: Activation = Activation.NONE
    keep_num_dims: bool = False  # output keeps the input's leading dims instead of [rows, units]

    op_name = "FULLY_CONNECTED"

    def constants(self) -> list[Tensor]:
        return [self.weights] + ([self.bias] if self.bias is not None else [])

    @property
    def rows(self) -> int:
        return self.input.size // self.weights.shape[1]

    def expected_output_shape(self) -> tuple[int, ...]:
        units = self.weights.shape[0]
        return (*self.input.shape[:-1], units) if self.keep_num_dims else (self.rows, units)

    def macs(self) -> int:
        return self.rows * self.weights.shape[0] * self.weights.shape[1]


@dataclass(eq=False)
class Add(Op):
    """Elementwise sum of two same-shaped tensors, each with its own quantization."""

    other: Tensor = None  # type: ignore[assignment]
    activation: Activation = Activation.NONE

    op_name = "ADD"

    def activation_inputs(self) -> list[Tensor]:
        return [self.input, self.other]

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape


@dataclass(eq=False)
class Pad(Op):
    """Spatial zero padding (in the quantized domain: pads with the zero point)."""

    padding: Padding = Padding()

    op_name = "PAD"

    def expected_output_shape(self) -> tuple[int, ...]:
        n, h, w, c = self.input.shape
        p = self.padding
        return (n, h + p.top + p.bottom, w + p.left + p.right, c)


@dataclass(eq=False)
class Mean(Op):
    """Mean over H and W of an NHWC tensor (keep_dims only changes the output's shape)."""

    keep_dims: bool = False

    op_name = "MEAN"

    def expected_output_shape(self) -> tuple[int, ...]:
        n, _, _, c = self.input.shape
        return (n, 1, 1, c) if self.keep_dims else (n, c)


@dataclass(eq=False)
class FloatMean(Mean):
    """ONNX Runtime's DequantizeLinear -> float ReduceMean -> QuantizeLinear (the dynamo
    exporter's head, left in float by onnxruntime.quantization): each value dequantized to
    float32, summed in float32 in the order ONNX Runtime's Eigen sums it, divided by the
    count, quantized with a true division. Not a requantized integer sum: they differ."""

    op_name = "REDUCE_MEAN"


@dataclass(eq=False)
class AveragePool2D(Op):
    filter: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: Padding = Padding()
    activation: Activation = Activation.NONE

    op_name = "AVERAGE_POOL_2D"

    def expected_output_shape(self) -> tuple[int, ...]:
        n, h, w, c = self.input.shape
        oh = conv_output_size(h, self.filter[0], self.stride[0], self.padding.top, self.padding.bottom)
        ow = conv_output_size(w, self.filter[1], self.stride[1], self.padding.left, self.padding.right)
        return (n, oh, ow, c)


@dataclass(eq=False)
class Reshape(Op):
    """Same bytes, new shape. The planner aliases output and input: no code is emitted."""

    op_name = "RESHAPE"

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.output.shape  # checked by element count in verify()


@dataclass(eq=False)
class Softmax(Op):
    beta: float = 1.0

    op_name = "SOFTMAX"

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape


@dataclass(eq=False)
class Logistic(Op):
    op_name = "LOGISTIC"

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape


@dataclass(eq=False)
class Quantize(Op):
    """float32/uint8/int8 -> int8 (quantize or requantize). From an NCHW input (`from_nchw`:
    an ONNX model's float input, or the int8 input a .tflite's TRANSPOSE reads, with the
    same quantization: a copy) the output is still NHWC: the transposition is fused in."""

    op_name = "QUANTIZE"

    @property
    def from_nchw(self) -> bool:
        return self.input.layout is Layout.NCHW

    def expected_output_shape(self) -> tuple[int, ...]:
        if self.from_nchw:
            n, c, h, w = self.input.shape
            return (n, h, w, c)
        return self.input.shape


class ConstantOperation(enum.Enum):
    """The elementwise ops an activation can meet a broadcast constant in."""

    MUL = "MUL"
    ADD = "ADD"


@dataclass(eq=False)
class ElementwiseConstant(Op):
    """int8 MUL or ADD of an activation and a one-element constant (Keras `Rescaling` and
    other preprocessing layers leave them at the input). Each output byte is a function of
    one input byte, so it runs as a 256-entry table, computed with TFLite's arithmetic.
    `constant_first`: the constant is TFLite's first input (ADD's multipliers depend on it)."""

    operation: ConstantOperation = ConstantOperation.MUL
    constant: Tensor = None  # type: ignore[assignment]
    constant_first: bool = False
    activation: Activation = Activation.NONE

    @property
    def op_name(self) -> str:  # type: ignore[override]
        return self.operation.value

    def constants(self) -> list[Tensor]:
        return [self.constant]

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape


@dataclass(eq=False)
class Dequantize(Op):
    """int8 -> float32."""

    op_name = "DEQUANTIZE"

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape


# The ops a row pipeline can run: QUANTIZE only as its first stage, from the graph's input.
STREAMABLE_OPS = (Conv2D, DepthwiseConv2D, Add, Quantize)


def is_byte_table(op: Op) -> bool:
    """Whether each output byte of `op` is a function of one input byte alone, in TFLite's
    arithmetic: it runs as one 256-entry table (integer QUANTIZE, LOGISTIC, MUL/ADD by a
    constant)."""
    if isinstance(op, Quantize):
        return op.input.dtype != DType.FLOAT32 and not op.from_nchw and op.arithmetic is Arithmetic.TFLITE
    return isinstance(op, (Logistic, ElementwiseConstant))


@dataclass(eq=False)
class TableChain(Op):
    """Byte tables in a row (a `Rescaling` layer's MUL then ADD, a uint8 QUANTIZE then
    either): their tables are composed at compile time into one, so the tensors between
    them never exist. Each stage keeps its op, so each table is the reference's."""

    stages: list[Op] = field(default_factory=list)

    op_name = "TABLES"

    def constants(self) -> list[Tensor]:
        return [c for stage in self.stages for c in stage.constants()]

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.input.shape

    def describe(self) -> str:
        names = " > ".join(stage.op_name for stage in self.stages)
        return f"[{names}] {'x'.join(map(str, self.input.shape))} -> {'x'.join(map(str, self.output.shape))}"


@dataclass(eq=False)
class RowPipeline(Op):
    """Convolutions, depthwise convolutions and ADDs (and an ONNX model's first QUANTIZE) run
    as one line-buffered pipeline.

    The output is produced row by row; each stage computes a row as soon as the rows of its
    inputs in its window exist, so the tensors between stages (`internal_tensors()`, e.g.
    an inverted residual's expansion) only ever hold a few rows in a ring buffer and are
    never materialized. Each stage keeps its own op, so its arithmetic is the reference's.
    `input` is the first external input; `activation_inputs()` lists them all.
    """

    stages: list[Op] = field(default_factory=list)
    label: str = "layer"  # "layer", "bottleneck", or several fused ("stem+bottleneck", ...)

    op_name = "PIPELINE"

    def activation_inputs(self) -> list[Tensor]:
        internal = {id(t) for t in self.internal_tensors()}
        external: dict[int, Tensor] = {}
        for stage in self.stages:
            for t in stage.activation_inputs():
                if id(t) not in internal:
                    external.setdefault(id(t), t)
        return list(external.values())

    def internal_tensors(self) -> list[Tensor]:
        return [stage.output for stage in self.stages[:-1]]

    def constants(self) -> list[Tensor]:
        return [c for stage in self.stages for c in stage.constants()]

    def expected_output_shape(self) -> tuple[int, ...]:
        return self.stages[-1].expected_output_shape()

    def macs(self) -> int:
        return sum(stage.macs() for stage in self.stages)

    def describe(self) -> str:
        if len(self.stages) == 1:
            return self.stages[0].describe()
        names = " > ".join(s.op_name.replace("DEPTHWISE_CONV_2D", "DW").replace("CONV_2D", "CONV")
                           for s in self.stages)
        shape = "x".join(map(str, self.input.shape))
        return f"{self.label} [{names}] {shape} -> {'x'.join(map(str, self.output.shape))}"


# --------------------------------------------------------------------------- graph


@dataclass(eq=False)
class Graph:
    ops: list[Op]
    input: Tensor
    output: Tensor
    source: str = "<model>"  # file name, for messages
    source_sha256: str = ""

    @property
    def arithmetic(self) -> Arithmetic:
        """Whose arithmetic the model follows (a frontend never mixes them)."""
        return self.ops[0].arithmetic if self.ops else Arithmetic.TFLITE

    def activations(self) -> list[Tensor]:
        """Every non-constant tensor, in first-use order."""
        seen: dict[int, Tensor] = {id(self.input): self.input}
        for op in self.ops:
            for t in op.activation_inputs() + [op.output]:
                seen.setdefault(id(t), t)
        return list(seen.values())

    def consumers(self, tensor: Tensor) -> list[Op]:
        return [op for op in self.ops if any(t is tensor for t in op.activation_inputs())]

    def producer(self, tensor: Tensor) -> Op | None:
        return next((op for op in self.ops if op.output is tensor), None)

    def verify(self) -> None:
        """Check the structural invariants every stage relies on; raise IRError if broken."""
        available = {id(self.input)}
        for op in self.ops:
            where = f"op {op.index} ({op.op_name})"
            if op.arithmetic is not self.arithmetic:
                raise IRError(f"{where}: mixes {op.arithmetic.value} and {self.arithmetic.value} arithmetic")
            for t in op.activation_inputs():
                if id(t) not in available:
                    raise IRError(f"{where}: input {t.name!r} is used before it is produced")
                if t.is_constant:
                    raise IRError(f"{where}: activation input {t.name!r} is a constant")
            if id(op.output) in available:
                raise IRError(f"{where}: output {op.output.name!r} is written twice")
            if isinstance(op, RowPipeline):
                self._verify_pipeline(op, where)
            if isinstance(op, TableChain) and not (
                    len(op.stages) > 1 and all(is_byte_table(s) for s in op.stages)
                    and op.stages[0].input is op.input and op.stages[-1].output is op.output
                    and all(a.output is b.input for a, b in zip(op.stages, op.stages[1:]))):
                raise IRError(f"{where}: a table chain must link byte tables, its input to its output")
            if isinstance(op, Reshape):
                if op.input.nbytes != op.output.nbytes:
                    raise IRError(f"{where}: reshape changes the byte count")
            elif tuple(op.output.shape) != tuple(op.expected_output_shape()):
                raise IRError(
                    f"{where}: output shape {op.output.shape} but the op computes "
                    f"{op.expected_output_shape()}"
                )
            available.add(id(op.output))
        if id(self.output) not in available:
            raise IRError(f"graph output {self.output.name!r} is never produced")

    def _verify_pipeline(self, pipeline: RowPipeline, where: str) -> None:
        if not pipeline.stages or pipeline.stages[-1].output is not pipeline.output:
            raise IRError(f"{where}: the last stage must produce the pipeline's output")
        if any(not isinstance(s, STREAMABLE_OPS) for s in pipeline.stages):
            raise IRError(f"{where}: only convolutions, ADD and QUANTIZE can run in a row pipeline")
        internal = {id(t) for t in pipeline.internal_tensors()}
        produced: set[int] = set()
        for stage in pipeline.stages:
            if stage.activation_inputs()[0].shape[0] != 1 or len(stage.output.shape) != 4:
                raise IRError(f"{where}: pipeline stages need batch-1 NHWC tensors")
            if isinstance(stage, Quantize) and stage.input is not self.input:
                raise IRError(f"{where}: a QUANTIZE stage must read the graph's input")
            if any(id(t) in internal and id(t) not in produced for t in stage.activation_inputs()):
                raise IRError(f"{where}: a stage reads a tensor of a later stage")
            produced.add(id(stage.output))
        for t in pipeline.internal_tensors():
            if t is self.output or any(id(t) in {id(x) for x in op.activation_inputs()}
                                       for op in self.ops if op is not pipeline):
                raise IRError(f"{where}: internal tensor {t.name!r} is used outside the pipeline")
