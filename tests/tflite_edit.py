"""Rewrite .tflite models for tests: read into plain Python, edit, serialize again.

The `tflite` package only has the generated reader and builder functions (no object API),
so this module reads the parts of the schema mnv2gen and TFLite need (operator codes, one
or more subgraphs with tensors, quantization and operators with their builtin options,
buffers) into dataclasses, and writes them back with the flatbuffers Builder. Metadata and
signature definitions are dropped: neither mnv2gen nor the TFLite interpreter needs them.

    model = tflite_edit.load(path)
    model.subgraphs[0].tensors[3].quant.scale = [0.0]
    tflite_edit.save(model, tmp_path / "bad.tflite")
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

OPTION_CLASSES = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
BUFFER_ALIGNMENT = 16  # TFLite's schema aligns buffer data to 16 bytes


@dataclass
class Quant:
    scale: list[float]
    zero_point: list[int]
    axis: int = 0


@dataclass
class Tensor:
    name: bytes
    shape: list[int]
    type: int
    buffer: int
    quant: Quant | None = None
    shape_signature: list[int] | None = None


@dataclass
class Operator:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: dict = field(default_factory=dict)  # field name (as in the schema's Add<Field>) -> value


@dataclass
class Subgraph:
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator]
    name: bytes = b""


@dataclass
class OperatorCode:
    builtin_code: int
    deprecated_builtin_code: int
    custom_code: bytes | None = None
    version: int = 1


@dataclass
class Model:
    version: int
    operator_codes: list[OperatorCode]
    subgraphs: list[Subgraph]
    buffers: list[bytes]  # b"" for an empty buffer
    description: bytes = b""

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    @property
    def graph(self) -> Subgraph:
        return self.subgraphs[0]

    def op_name(self, op: Operator) -> str:
        code = self.operator_codes[op.opcode_index]
        return tflite.BUILTIN_OPCODE2NAME[max(code.builtin_code, code.deprecated_builtin_code)]

    def find_op(self, name: str) -> Operator:
        return next(op for op in self.graph.operators if self.op_name(op) == name)


# ------------------------------------------------------------------------------ reading


def load(path: str | Path) -> Model:
    return loads(Path(path).read_bytes())


def loads(data: bytes) -> Model:
    m = tflite.Model.GetRootAs(data, 0)
    return Model(
        version=m.Version(),
        operator_codes=[_read_opcode(m.OperatorCodes(i)) for i in range(m.OperatorCodesLength())],
        subgraphs=[_read_subgraph(m.Subgraphs(i)) for i in range(m.SubgraphsLength())],
        buffers=[_read_buffer(m.Buffers(i), data) for i in range(m.BuffersLength())],
        description=m.Description() or b"",
    )


def _ints(obj, name: str) -> list[int]:
    return [int(v) for v in getattr(obj, name + "AsNumpy")()] if getattr(obj, name + "Length")() else []


def _read_opcode(c) -> OperatorCode:
    return OperatorCode(int(c.BuiltinCode()), int(c.DeprecatedBuiltinCode()), c.CustomCode(), c.Version())


def _read_subgraph(g) -> Subgraph:
    return Subgraph(tensors=[_read_tensor(g.Tensors(i)) for i in range(g.TensorsLength())],
                    inputs=_ints(g, "Inputs"), outputs=_ints(g, "Outputs"),
                    operators=[_read_operator(g.Operators(i)) for i in range(g.OperatorsLength())],
                    name=g.Name() or b"")


def _read_tensor(t) -> Tensor:
    q = t.Quantization()
    quant = None
    if q is not None and q.ScaleLength():
        quant = Quant([float(s) for s in q.ScaleAsNumpy()], _ints(q, "ZeroPoint"), q.QuantizedDimension())
    return Tensor(name=t.Name() or b"", shape=_ints(t, "Shape"), type=t.Type(), buffer=t.Buffer(),
                  quant=quant, shape_signature=_ints(t, "ShapeSignature") or None)


def _options_module(options_type: int):
    name = OPTION_CLASSES[options_type]
    return name, importlib.import_module(f"tflite.{name}")


def _option_fields(name: str, module) -> list[str]:
    prefix = f"{name}Add"
    return [f[len(prefix):] for f in dir(module) if f.startswith(prefix)]


def _read_operator(op) -> Operator:
    options_type = op.BuiltinOptionsType()
    options = {}
    table = op.BuiltinOptions()
    if options_type and table is not None:
        name, module = _options_module(options_type)
        obj = getattr(module, name)()
        obj.Init(table.Bytes, table.Pos)
        for f in _option_fields(name, module):
            if hasattr(obj, f + "AsNumpy"):  # a vector of scalars
                options[f] = _ints(obj, f)
            elif hasattr(obj, f):
                value = getattr(obj, f)()
                if isinstance(value, (int, float, bool)):
                    options[f] = value
    return Operator(op.OpcodeIndex(), _ints(op, "Inputs"), _ints(op, "Outputs"), options_type, options)


def _read_buffer(b, data: bytes) -> bytes:
    if b.Offset() > 1:
        return bytes(data[b.Offset():b.Offset() + b.Size()])
    return b.DataAsNumpy().tobytes() if b.DataLength() else b""


# ------------------------------------------------------------------------------ writing


def dumps(model: Model) -> bytes:
    b = flatbuffers.Builder(1024)
    buffers = [_write_buffer(b, data) for data in model.buffers]
    codes = [_write_opcode(b, c) for c in model.operator_codes]
    subgraphs = [_write_subgraph(b, g) for g in model.subgraphs]
    description = b.CreateString(model.description)
    vectors = {name: _table_vector(b, offsets) for name, offsets in
               (("Buffers", buffers), ("OperatorCodes", codes), ("Subgraphs", subgraphs))}
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, model.version)
    tflite.ModelAddDescription(b, description)
    for name, vector in vectors.items():
        getattr(tflite, f"ModelAdd{name}")(b, vector)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def save(model: Model, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(dumps(model))
    return path


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _int_vector(b: flatbuffers.Builder, values, dtype=np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _write_buffer(b: flatbuffers.Builder, data: bytes) -> int:
    vector = None
    if data:
        b.StartVector(1, len(data), BUFFER_ALIGNMENT)
        b.head -= len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        vector = b.EndVector()
    tflite.BufferStart(b)
    if vector is not None:
        tflite.BufferAddData(b, vector)
    return tflite.BufferEnd(b)


def _write_opcode(b: flatbuffers.Builder, c: OperatorCode) -> int:
    custom = b.CreateString(c.custom_code) if c.custom_code is not None else None
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddBuiltinCode(b, c.builtin_code)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, c.deprecated_builtin_code)
    tflite.OperatorCodeAddVersion(b, c.version)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    return tflite.OperatorCodeEnd(b)


def _write_subgraph(b: flatbuffers.Builder, g: Subgraph) -> int:
    tensors = _table_vector(b, [_write_tensor(b, t) for t in g.tensors])
    operators = _table_vector(b, [_write_operator(b, op) for op in g.operators])
    inputs, outputs, name = _int_vector(b, g.inputs), _int_vector(b, g.outputs), b.CreateString(g.name)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    tflite.SubGraphAddOperators(b, operators)
    tflite.SubGraphAddInputs(b, inputs)
    tflite.SubGraphAddOutputs(b, outputs)
    tflite.SubGraphAddName(b, name)
    return tflite.SubGraphEnd(b)


def _write_tensor(b: flatbuffers.Builder, t: Tensor) -> int:
    quant = _write_quant(b, t.quant) if t.quant is not None else None
    shape, name = _int_vector(b, t.shape), b.CreateString(t.name)
    signature = _int_vector(b, t.shape_signature) if t.shape_signature else None
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, t.type)
    tflite.TensorAddBuffer(b, t.buffer)
    tflite.TensorAddName(b, name)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    if signature is not None:
        tflite.TensorAddShapeSignature(b, signature)
    return tflite.TensorEnd(b)


def _write_quant(b: flatbuffers.Builder, q: Quant) -> int:
    scale = _int_vector(b, q.scale, np.float32)
    zero_point = _int_vector(b, q.zero_point, np.int64)
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale)
    tflite.QuantizationParametersAddZeroPoint(b, zero_point)
    tflite.QuantizationParametersAddQuantizedDimension(b, q.axis)
    return tflite.QuantizationParametersEnd(b)


def _write_operator(b: flatbuffers.Builder, op: Operator) -> int:
    options = _write_options(b, op) if op.options_type else None
    inputs, outputs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, op.opcode_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, op.options_type)
        tflite.OperatorAddBuiltinOptions(b, options)
    return tflite.OperatorEnd(b)


def _write_options(b: flatbuffers.Builder, op: Operator) -> int:
    name, module = _options_module(op.options_type)
    # Vectors must be built before the table that refers to them.
    values = {f: _int_vector(b, v) if isinstance(v, list) else v for f, v in op.options.items()}
    getattr(module, f"{name}Start")(b)
    for f, value in values.items():
        getattr(module, f"{name}Add{f}")(b, value)
    return getattr(module, f"{name}End")(b)
