"""Read a `.tflite` flatbuffer into plain Python data.

This is the only module that touches the flatbuffer. A corrupt file can make the generated
accessors raise almost anything (IndexError, struct.error, UnicodeDecodeError...) or return
garbage offsets, so every access happens inside one guarded function and comes out as plain
lists, ints and numpy arrays that the validator (`tflite.py`) can check calmly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tflite

from ..errors import ModelError
from ..ir import DType

# TFLite TensorType codes -> our dtypes. Anything else is reported by name.
TENSOR_TYPES = {tflite.TensorType.FLOAT32: DType.FLOAT32, tflite.TensorType.INT32: DType.INT32,
                tflite.TensorType.UINT8: DType.UINT8, tflite.TensorType.INT64: DType.INT64,
                tflite.TensorType.INT16: DType.INT16, tflite.TensorType.INT8: DType.INT8}
TENSOR_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}

# The options fields we read, per builtin op: (options class, [field getters]).
OPTION_FIELDS: dict[str, tuple[type, list[str]]] = {
    "CONV_2D": (tflite.Conv2DOptions, ["Padding", "StrideW", "StrideH", "FusedActivationFunction",
                                       "DilationWFactor", "DilationHFactor"]),
    "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, [
        "Padding", "StrideW", "StrideH", "DepthMultiplier", "FusedActivationFunction",
        "DilationWFactor", "DilationHFactor"]),
    "ADD": (tflite.AddOptions, ["FusedActivationFunction"]),
    "MUL": (tflite.MulOptions, ["FusedActivationFunction"]),
    "AVERAGE_POOL_2D": (tflite.Pool2DOptions, ["Padding", "StrideW", "StrideH", "FilterWidth",
                                               "FilterHeight", "FusedActivationFunction"]),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, ["FusedActivationFunction", "WeightsFormat",
                                                       "KeepNumDims"]),
    "MEAN": (tflite.ReducerOptions, ["KeepDims"]),
    "SOFTMAX": (tflite.SoftmaxOptions, ["Beta"]),
    "STRIDED_SLICE": (tflite.StridedSliceOptions, ["BeginMask", "EndMask", "EllipsisMask",
                                                   "NewAxisMask", "ShrinkAxisMask"]),
    "PACK": (tflite.PackOptions, ["ValuesCount", "Axis"]),
}



def _check_option_getters() -> None:
    """Every getter named above is a method of its options class: a misspelt one would make
    every model with that op read as malformed, so it fails at import instead."""
    for op_name, (cls, getters) in OPTION_FIELDS.items():
        missing = [g for g in getters if not callable(getattr(cls, g, None))]
        if missing:
            raise ImportError(f"{cls.__name__} has no {', '.join(missing)} (OPTION_FIELDS[{op_name!r}])")


_check_option_getters()

MAX_FILE_BYTES = 1 << 31  # flatbuffers address 2 GiB at most


@dataclass
class RawQuant:
    scale: np.ndarray  # float32
    zero_point: np.ndarray  # int64
    axis: int


@dataclass
class RawTensor:
    index: int
    name: str
    shape: list[int]
    type_code: int
    buffer: int
    quant: RawQuant | None


@dataclass
class RawOp:
    index: int
    name: str  # builtin op name, e.g. "CONV_2D", or "CUSTOM(<code>)"
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)

    def option(self, getter: str, default):
        """The option read by `getter`, or `default` (the schema's) when the model stores no
        options table. Only getters OPTION_FIELDS reads for this op are known: a misspelt
        one raises instead of quietly reading as the default."""
        if getter not in OPTION_FIELDS.get(self.name, (None, ()))[1]:
            raise KeyError(f"{self.name} options are not read with {getter!r} (see OPTION_FIELDS)")
        return self.options.get(getter, default)


@dataclass
class RawModel:
    source: str
    version: int
    subgraph_count: int
    tensors: list[RawTensor]
    ops: list[RawOp]
    inputs: list[int]
    outputs: list[int]
    buffers: list[bytes | None]  # None: no data (activation or empty buffer)


def read_model(data: bytes, source: str) -> RawModel:
    """Parse the flatbuffer; any failure inside becomes one clear ModelError."""
    if len(data) < 8:
        raise ModelError(f"the file is {len(data)} bytes long, too short to be a .tflite model",
                         source=source)
    if len(data) >= MAX_FILE_BYTES:
        raise ModelError("the file is larger than 2 GiB; flatbuffers cannot address it", source=source)
    if data[4:8] != b"TFL3":
        raise ModelError("not a TensorFlow Lite model (the file identifier is not 'TFL3'); "
                         "give the .tflite file written by the TFLite converter", source=source)
    try:
        return _read(data, source)
    except ModelError as exc:
        if exc.source:
            raise
        raise ModelError(str(exc), source=source) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer can raise anything
        raise ModelError(f"the flatbuffer is malformed ({type(exc).__name__} while reading it); "
                         "re-export the model with the TFLite converter", source=source) from None


def _read(data: bytes, source: str) -> RawModel:
    model = tflite.Model.GetRootAs(data, 0)
    subgraph_count = model.SubgraphsLength()
    if subgraph_count < 1:
        raise ModelError("the model has no subgraph", source=source)
    graph = model.Subgraphs(0)
    opcodes = [_opcode_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    tensors = [_read_tensor(graph.Tensors(i), i) for i in range(graph.TensorsLength())]
    ops = [_read_op(graph.Operators(i), i, opcodes) for i in range(graph.OperatorsLength())]
    buffers = [_read_buffer(model.Buffers(i), data) for i in range(model.BuffersLength())]
    return RawModel(
        source=source,
        version=model.Version(),
        subgraph_count=subgraph_count,
        tensors=tensors,
        ops=ops,
        inputs=[int(graph.Inputs(i)) for i in range(graph.InputsLength())],
        outputs=[int(graph.Outputs(i)) for i in range(graph.OutputsLength())],
        buffers=buffers,
    )


def _opcode_name(code) -> str:
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        # The custom name lands in an error message: keep it printable and short.
        name = "".join(c if c.isprintable() else "?" for c in (custom or b"").decode("ascii", "replace")[:64])
        return f"CUSTOM({name if custom else '?'})"
    return tflite.BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")


def _read_tensor(t, index: int) -> RawTensor:
    name = t.Name()
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        quant = RawQuant(
            scale=_vector(q.ScaleLength(), q.ScaleAsNumpy, np.float32),
            zero_point=_vector(q.ZeroPointLength(), q.ZeroPointAsNumpy, np.int64),
            axis=int(q.QuantizedDimension()),
        )
    return RawTensor(
        index=index,
        name=name.decode("utf-8", "replace") if name else f"tensor_{index}",
        shape=[int(t.Shape(i)) for i in range(t.ShapeLength())],
        type_code=int(t.Type()),
        buffer=int(t.Buffer()),
        quant=quant,
    )


def _vector(length: int, as_numpy, dtype) -> np.ndarray:
    """A numeric vector of the flatbuffer, copied out whole: its per-element getters cost a
    Python call each, about a second for a model's per-channel scales. `as_numpy` returns 0
    for an absent vector, hence the length test."""
    return np.array(as_numpy() if length else [], dtype=dtype)


def _read_op(op, index: int, opcodes: list[str]) -> RawOp:
    code_index = int(op.OpcodeIndex())
    if not 0 <= code_index < len(opcodes):
        raise ModelError(f"op {index} refers to operator code {code_index}, but the model "
                         f"defines {len(opcodes)}")
    name = opcodes[code_index]
    return RawOp(
        index=index,
        name=name,
        inputs=[int(op.Inputs(i)) for i in range(op.InputsLength())],
        outputs=[int(op.Outputs(i)) for i in range(op.OutputsLength())],
        options=_read_options(op, name),
    )


def _read_options(op, name: str) -> dict:
    if name not in OPTION_FIELDS:
        return {}
    cls, fields = OPTION_FIELDS[name]
    table = op.BuiltinOptions()
    if table is None:
        return {}  # absent options mean the schema's defaults; validators fill them in
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return {f: getattr(options, f)() for f in fields}


def _read_buffer(buffer, data: bytes) -> bytes | None:
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if offset > 1:  # large models keep their buffers after the flatbuffer
        if offset + size > len(data):
            raise ModelError(f"a buffer lies at bytes {offset}..{offset + size}, past the end of "
                             f"the {len(data)}-byte file")
        return bytes(data[offset:offset + size])
    length = buffer.DataLength()
    if length == 0:
        return None
    return buffer.DataAsNumpy().tobytes()
