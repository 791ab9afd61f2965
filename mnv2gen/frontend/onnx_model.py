"""An untrusted `.onnx` file -> plain, checked data: its nodes, constants and one input.

Only the `onnx` package's protobuf classes are used (never onnxruntime). Everything the file
claims is checked before it is used: the opsets, every constant's type, shape and byte count
(so no constant is decoded from a buffer of the wrong size), that constants are inline (no
external data), that there is one float NCHW input and one output, that nodes come in
topological order. `onnx_ops.py` then turns the nodes into IR ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError, printable

MAX_FILE_BYTES = 256 << 20
MAX_CONSTANT_ELEMENTS = 1 << 24
MAX_DIM = 1 << 16
FIRST_OPSET = 13
MICROSOFT_DOMAIN = "com.microsoft"
NODE_DOMAINS = ("", MICROSOFT_DOMAIN, "ai.onnx.ml")
# ONNX TensorProto element types we can read, as numpy types.
ELEMENT_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64}


@dataclass
class OnnxNode:
    """A node as data: its position, op type, domain, inputs and outputs by name (an empty
    name: an absent optional input) and its attributes as Python values."""

    position: int
    op_type: str
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, object]

    def label(self) -> str:
        """How an error names the node: position, op and (printable, bounded) name."""
        name = printable(self.name[:60]) if self.name else "unnamed"
        return f"node {self.position} ({self.op_type} {name})"


@dataclass
class OnnxModel:
    source: str
    nodes: list[OnnxNode]
    constants: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    data: bytes


def read_onnx(path: Path) -> OnnxModel:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file: {exc.strerror}", source=source) from None
    if len(data) > MAX_FILE_BYTES:
        raise ModelError(f"the file has {len(data):,} bytes, over the {MAX_FILE_BYTES:,} mnv2gen reads",
                         source=source)
    model = _parse(data, source)
    return _Reader(model, source, data, path.resolve().parent).read()


def _parse(data: bytes, source: str):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise ModelError("not a valid ONNX file (the protobuf does not decode)", source=source) from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError("not an ONNX model: it has no graph", source=source)
    return model


def text(value) -> str:
    """A protobuf string field as text: proto2 hands back bytes where the file's "string"
    is not valid UTF-8."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _is_constant(node: OnnxNode) -> bool:
    return node.op_type == "Constant" and node.domain == ""


class _Reader:
    def __init__(self, model, source: str, data: bytes, folder: Path):
        self.model, self.graph, self.source, self.data = model, model.graph, source, data
        self.folder = folder  # where external data files may be, and nowhere else

    def fail(self, message: str) -> ModelError:
        return ModelError(message, source=self.source)

    def read(self) -> OnnxModel:
        self._check_opsets()
        if self.graph.sparse_initializer:
            raise self.fail("sparse initializers are not supported")
        constants = {}
        for tensor in self.graph.initializer:
            constants[text(tensor.name)] = self._constant(tensor, f"initializer {printable(text(tensor.name)[:60])}")
        all_nodes = [self._node(position, proto) for position, proto in enumerate(self.graph.node)]
        nodes = [node for node in all_nodes if not _is_constant(node)]
        used = {name for node in nodes for name in node.inputs}
        for node in all_nodes:  # the quantizer leaves unused Constant nodes behind: ignored
            if _is_constant(node) and node.outputs[0] in used:
                constants.update(self._constant_node(node))
        input_name, input_shape = self._input(constants)
        self._check_order(nodes, constants, input_name)
        if len(self.graph.output) != 1:
            raise self.fail(f"the model has {len(self.graph.output)} outputs; mnv2gen compiles models with one")
        return OnnxModel(self.source, nodes, constants, input_name, input_shape, text(self.graph.output[0].name),
                         self.data)

    def _check_opsets(self) -> None:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
        for opset in self.model.opset_import:
            domain = text(opset.domain)
            if domain in ("", "ai.onnx"):
                if not FIRST_OPSET <= opset.version <= newest:
                    raise self.fail(f"opset {opset.version}: mnv2gen reads opsets {FIRST_OPSET} to {newest}")
            elif domain == MICROSOFT_DOMAIN:
                if opset.version != 1:
                    raise self.fail(f"{MICROSOFT_DOMAIN} opset {opset.version}: only version 1 is known")
            elif domain != "ai.onnx.ml":
                raise self.fail(f"unknown operator domain {printable(domain[:60])}")
        if self.model.functions:
            raise self.fail("model-local functions are not supported")

    def _constant(self, tensor, what: str) -> np.ndarray:
        from onnx import numpy_helper

        numpy_type = ELEMENT_TYPES.get(tensor.data_type)
        if numpy_type is None:
            raise self.fail(f"{what} has element type {tensor.data_type}, not one mnv2gen reads")
        shape = tuple(tensor.dims)
        if any(d < 0 or d > MAX_DIM for d in shape) or len(shape) > 4:
            raise self.fail(f"{what} has an invalid shape {shape}")
        count = math.prod(shape)
        if count > MAX_CONSTANT_ELEMENTS:
            raise self.fail(f"{what} has {count:,} elements, too many")
        if tensor.data_location == 1 or tensor.external_data:
            return self._external(tensor, what, numpy_type, shape)
        if tensor.HasField("raw_data") and len(tensor.raw_data) != count * np.dtype(numpy_type).itemsize:
            raise self.fail(f"{what} holds {len(tensor.raw_data)} bytes for a {shape} {np.dtype(numpy_type)}")
        try:
            array = numpy_helper.to_array(tensor)
        except (ValueError, TypeError):
            raise self.fail(f"{what} cannot be decoded") from None
        if array.shape != shape or array.dtype != numpy_type:
            raise self.fail(f"{what} does not hold the {shape} values it declares")
        return self._finite(array, what)

    def _finite(self, array: np.ndarray, what: str) -> np.ndarray:
        if array.dtype == np.float32 and not np.isfinite(array).all():
            raise self.fail(f"{what} holds a non-finite value")
        return array

    def _external(self, tensor, what: str, numpy_type, shape: tuple[int, ...]) -> np.ndarray:
        """A constant in an external data file (torch's exporter writes `model.onnx.data`):
        a file beside the model, named without any folder, its offset and length inside it."""
        fields = {text(entry.key): text(entry.value) for entry in tensor.external_data}
        location = fields.get("location", "")
        if not location or location != Path(location).name or location in (".", "..") or "\\" in location:
            raise self.fail(f"{what}: its external data file must be a plain file name beside the model")
        file = self.folder / location
        nbytes = math.prod(shape) * np.dtype(numpy_type).itemsize
        try:
            offset, length = int(fields.get("offset", "0")), int(fields.get("length", str(nbytes)))
        except ValueError:
            raise self.fail(f"{what}: its external data offset or length is not a number") from None
        if not file.is_file():
            raise self.fail(f"{what}: its external data file {printable(location[:60])} is missing")
        size = file.stat().st_size
        if length != nbytes or not 0 <= offset <= size - length:
            raise self.fail(f"{what}: its external data ({length} bytes at {offset}) does not fit the declared "
                            f"{shape} or the file's {size} bytes")
        with file.open("rb") as f:
            f.seek(offset)
            array = np.frombuffer(f.read(length), dtype=numpy_type).reshape(shape).copy()
        return self._finite(array, what)

    def _node(self, position: int, proto) -> OnnxNode:
        domain = text(proto.domain)
        node = OnnxNode(position, text(proto.op_type), "" if domain == "ai.onnx" else domain, text(proto.name),
                        [text(name) for name in proto.input], [text(name) for name in proto.output], {})
        for attribute in proto.attribute:
            node.attributes[text(attribute.name)] = self._attribute(node, attribute)
        if node.domain not in NODE_DOMAINS:  # the QDQ fusion's own domain among the refused
            raise self.fail(f"{node.label()}: unknown operator domain {printable(node.domain[:60])}")
        if len(node.outputs) != 1 or not node.outputs[0]:
            raise self.fail(f"{node.label()}: expected one output, found {len(node.outputs)}")
        return node

    def _attribute(self, node: OnnxNode, attribute):
        from onnx import AttributeProto

        if attribute.type == AttributeProto.INT:
            return int(attribute.i)
        if attribute.type == AttributeProto.INTS:
            if len(attribute.ints) > 8:
                raise self.fail(f"{node.label()}: attribute {printable(text(attribute.name)[:40])} is too long")
            return tuple(int(v) for v in attribute.ints)
        if attribute.type == AttributeProto.FLOAT:
            return float(attribute.f)
        if attribute.type == AttributeProto.STRING:
            return attribute.s.decode("ascii", errors="replace")[:40]
        if attribute.type == AttributeProto.TENSOR:
            return attribute.t
        raise self.fail(f"{node.label()}: attribute {printable(text(attribute.name)[:40])} has a type mnv2gen "
                        "does not read")

    def _constant_node(self, node: OnnxNode) -> dict[str, np.ndarray]:
        value = node.attributes.get("value")
        if set(node.attributes) != {"value"} or value is None or isinstance(value, (int, float, str, tuple)):
            raise self.fail(f"{node.label()}: only Constant nodes with a tensor `value` are supported")
        return {node.outputs[0]: self._constant(value, node.label())}

    def _input(self, constants: dict) -> tuple[str, tuple[int, ...]]:
        inputs = [value for value in self.graph.input if text(value.name) not in constants]
        if len(inputs) != 1:
            raise self.fail(f"the model has {len(inputs)} inputs; mnv2gen compiles models with one")
        value = inputs[0]
        tensor_type = value.type.tensor_type if value.type.HasField("tensor_type") else None
        if tensor_type is None or tensor_type.elem_type != 1:
            raise self.fail("the input must be a float32 tensor (the model's QuantizeLinear quantizes it)")
        dims = tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        if len(shape) != 4 or shape[0] not in (1, -1) or any(not 0 < d <= MAX_DIM for d in shape[1:]):
            raise self.fail(f"the input shape {shape} is not [1, C, H, W] with fixed C, H and W "
                            "(a dynamic batch is read as 1)")
        return text(value.name), (1, *shape[1:])

    def _check_order(self, nodes: list[OnnxNode], constants: dict, input_name: str) -> None:
        """Every node reads only the input, constants and outputs of earlier nodes, and no
        name is produced twice."""
        known = set(constants) | {input_name}
        for node in nodes:
            missing = [name for name in node.inputs if name and name not in known]
            if missing:
                raise self.fail(f"{node.label()}: input {printable(missing[0][:60])} is not produced "
                                "by an earlier node")
            if node.outputs[0] in known:
                raise self.fail(f"{node.label()}: output {printable(node.outputs[0][:60])} is written twice")
            known.add(node.outputs[0])
