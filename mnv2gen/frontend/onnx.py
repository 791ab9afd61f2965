"""Quantized `.onnx` (QOperator, as onnxruntime.quantization.quantize_static writes it) -> IR.
QDQ models are first fused into the same nodes (`onnx_qdq.py`), as ONNX Runtime fuses them.

The graph it reads: QuantizeLinear -> QLinearConv (depthwise where group == channels) ->
com.microsoft QLinearAdd -> com.microsoft QLinearGlobalAveragePool -> Flatten ->
com.microsoft QGemm -> DequantizeLinear. Every op of the IR it builds carries
`Arithmetic.ONNXRUNTIME`: the C must equal ONNX Runtime, whose rounding is not TFLite's.

Layout: ONNX is NCHW, the IR NHWC. The first QuantizeLinear reads the float NCHW input and
writes NHWC (`Quantize.from_nchw`); weights are transposed here; GlobalAveragePool's 1x1
output is the same bytes in both layouts, so Flatten is a Reshape.

Activations: uint8 ones are kept as int8 shifted by -128 (`Quantization.model_offset`), so the
int8 kernels serve both. Anything else is refused with a ModelError naming the node.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import ModelError, printable
from .onnx_model import MICROSOFT_DOMAIN, OnnxModel, OnnxNode, read_onnx
from .onnx_qdq import FLOAT_MEAN, FUSED_DOMAIN, fuse_float_means, is_qdq, qdq_to_qoperator

ORT = ir.Arithmetic.ONNXRUNTIME
ACTIVATION_TYPES = {np.dtype(np.int8): 0, np.dtype(np.uint8): 128}  # -> model_offset
MAX_KERNEL = 16
MAX_STRIDE = 4


def load_onnx(path: str | Path) -> ir.Graph:
    model = fuse_float_means(read_onnx(Path(path)))
    if is_qdq(model):
        model = qdq_to_qoperator(model)
    graph = _Builder(model).build()
    graph.source_sha256 = hashlib.sha256(model.data).hexdigest()
    try:
        graph.verify()
    except ir.IRError as exc:
        raise ModelError(f"inconsistent model: {exc}", source=model.source) from None
    return graph


def activation_type(path: str | Path) -> str:
    """"uint8" or "int8": the element type of a (validated) model's quantized activations."""
    quantize = load_onnx(path).ops[0]
    return "uint8" if quantize.output.quant.model_offset else "int8"


class _Builder:
    def __init__(self, model: OnnxModel):
        self.model = model
        self.tensors: dict[str, ir.Tensor] = {}  # activations by ONNX name
        self.ops: list[ir.Op] = []
        self.input = ir.Tensor("input", model.input_shape, "float32", layout=ir.Layout.NCHW)
        self.tensors[model.input_name] = self.input

    def fail(self, node: OnnxNode, message: str) -> ModelError:
        return ModelError(f"{node.label()}: {message}", source=self.model.source)

    def build(self) -> ir.Graph:
        for node in self.model.nodes:
            handler = HANDLERS.get((node.domain, node.op_type))
            if handler is None:
                domain = f"{node.domain}." if node.domain else ""
                raise self.fail(node, f"op {domain}{printable(node.op_type[:40])} is not supported (mnv2gen "
                                "reads QOperator models from onnxruntime.quantization.quantize_static)")
            op = handler(self, node)
            self.tensors[node.outputs[0]] = op.output
            self.ops.append(op)
        output = self.tensors.get(self.model.output_name)
        if output is None or output.dtype != "float32" or not isinstance(self.ops[-1], ir.Dequantize):
            raise ModelError("the model's output must be the last node's, a DequantizeLinear",
                             source=self.model.source)
        return ir.Graph(ops=self.ops, input=self.input, output=output, source=self.model.source)

    # ---------------------------------------------------------------- operands

    def activation(self, node: OnnxNode, slot: int) -> ir.Tensor:
        name = self.input_name(node, slot)
        tensor = self.tensors.get(name)
        if tensor is None:
            raise self.fail(node, f"input {slot} must be an activation, not a constant")
        if tensor.dtype != "int8":
            raise self.fail(node, f"input {slot} is not a quantized activation")
        return tensor

    def constant(self, node: OnnxNode, slot: int, dtypes: tuple, shape: tuple[int, ...] | None = None,
                 what: str = "") -> np.ndarray:
        name = self.input_name(node, slot)
        value = self.model.constants.get(name)
        what = what or f"input {slot}"
        if value is None:
            raise self.fail(node, f"{what} must be a constant")
        if value.dtype not in [np.dtype(t) for t in dtypes]:
            raise self.fail(node, f"{what} is {value.dtype}, expected {' or '.join(np.dtype(t).name for t in dtypes)}")
        if shape is not None and value.shape != shape:
            raise self.fail(node, f"{what} has shape {value.shape}, expected {shape}")
        return value

    def input_name(self, node: OnnxNode, slot: int) -> str:
        if slot >= len(node.inputs) or not node.inputs[slot]:
            raise self.fail(node, f"input {slot} is missing")
        return node.inputs[slot]

    def scale(self, node: OnnxNode, slot: int) -> float:
        value = self.constant(node, slot, (np.float32,), what=f"scale (input {slot})")
        if value.size != 1 or not float(value.reshape(-1)[0]) > 0:
            raise self.fail(node, f"scale (input {slot}) must be one positive float")
        return float(value.reshape(-1)[0])

    def quantization(self, node: OnnxNode, scale_slot: int) -> ir.Quantization:
        """An activation's (scale, zero point) pair at inputs scale_slot, scale_slot + 1,
        as the IR keeps it: int8, uint8 ones shifted (model_offset 128)."""
        scale = self.scale(node, scale_slot)
        zero_point = self.constant(node, scale_slot + 1, (np.int8, np.uint8), what=f"zero point (input {scale_slot + 1})")
        if zero_point.size != 1:
            raise self.fail(node, "an activation's zero point must be one value")
        offset = ACTIVATION_TYPES[zero_point.dtype]
        return ir.Quantization((scale,), (int(zero_point.reshape(-1)[0]) - offset,), model_offset=offset)

    def check_input_quantization(self, node: OnnxNode, tensor: ir.Tensor, scale_slot: int) -> None:
        """The scale and zero point a node states for its input must be the ones the input
        was quantized with, bit for bit (ONNX Runtime would use the node's own)."""
        quant = self.quantization(node, scale_slot)
        if quant != tensor.quant:
            raise self.fail(node, f"the scale or zero point of input {scale_slot - 1} differ from those its "
                            "producer quantized it with")

    def new_activation(self, node: OnnxNode, shape: tuple[int, ...], quant: ir.Quantization) -> ir.Tensor:
        return ir.Tensor(f"t{node.position}", shape, "int8", quant)

    def attributes(self, node: OnnxNode, allowed: dict[str, object]) -> dict[str, object]:
        """The node's attributes over `allowed`'s defaults, each of its default's type (a
        None default: a list of ints); any attribute not named there is refused."""
        unknown = set(node.attributes) - set(allowed)
        if unknown:
            raise self.fail(node, f"attribute {printable(sorted(unknown)[0][:40])} is not supported")
        for name, value in node.attributes.items():
            expected = type(allowed[name]) if allowed[name] is not None else tuple
            if type(value) is not expected:
                raise self.fail(node, f"attribute {name} is a {type(value).__name__}, expected a {expected.__name__}")
        return {**allowed, **node.attributes}


# --------------------------------------------------------------------------- ops


def _quantize_linear(b: _Builder, node: OnnxNode) -> ir.Op:
    b.attributes(node, {"axis": 1, "saturate": 1})
    x = b.input_name(node, 0)
    if x not in b.tensors or b.tensors[x] is not b.input or b.ops:
        raise b.fail(node, "only the model's first node may quantize, and only its float input")
    quant = b.quantization(node, 1)
    n, c, h, w = b.input.shape
    output = b.new_activation(node, (n, h, w, c), quant)
    return ir.Quantize(input=b.input, output=output, index=node.position, arithmetic=ORT)


def _dequantize_linear(b: _Builder, node: OnnxNode) -> ir.Op:
    b.attributes(node, {"axis": 1})
    x = b.activation(node, 0)
    b.check_input_quantization(node, x, 1)
    if len(x.shape) != 2 and x.shape[-1] != 1:
        raise b.fail(node, "only a [1, classes] or single-channel output may be dequantized (their NCHW "
                     "and NHWC bytes are the same)")
    output = ir.Tensor(f"t{node.position}", x.shape, "float32")
    return ir.Dequantize(input=x, output=output, index=node.position, arithmetic=ORT)


def _weights(b: _Builder, node: OnnxNode, slot: int, channels: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """int8 weights with per-channel (or per-tensor) positive scales and zero points 0."""
    weights = b.constant(node, slot, (np.int8,), what="the weights")
    scales = b.constant(node, slot + 1, (np.float32,), what="the weight scales").reshape(-1)
    zero_points = b.constant(node, slot + 2, (np.int8,), what="the weight zero points").reshape(-1)
    if scales.size not in (1, channels) or zero_points.size not in (1, channels):
        raise b.fail(node, f"the weight scales and zero points must be per tensor or per output channel ({channels})")
    if (zero_points != 0).any():
        raise b.fail(node, "the weights' zero points must be 0 (symmetric int8 weights)")
    if not (scales > 0).all():
        raise b.fail(node, "the weight scales must be positive")
    return weights, tuple(float(s) for s in np.broadcast_to(scales, (channels,)))


def _bias(b: _Builder, node: OnnxNode, slot: int, channels: int) -> ir.Tensor | None:
    if slot >= len(node.inputs) or not node.inputs[slot]:
        return None
    bias = b.constant(node, slot, (np.int32,), (channels,), what="the bias")
    return ir.Tensor(f"t{node.position}_bias", bias.shape, "int32", data=bias)


def _conv(b: _Builder, node: OnnxNode) -> ir.Op:
    attrs = b.attributes(node, {"auto_pad": "NOTSET", "dilations": (1, 1), "group": 1, "kernel_shape": None,
                                "pads": (0, 0, 0, 0), "strides": (1, 1)})
    x = b.activation(node, 0)
    b.check_input_quantization(node, x, 1)
    _, in_h, in_w, in_c = x.shape
    weights = b.constant(node, 3, (np.int8,), what="the weights")
    if weights.ndim != 4:
        raise b.fail(node, "the weights must be [M, C/group, kh, kw]")
    out_c, per_group, kh, kw = weights.shape
    group = attrs["group"]
    depthwise = group == in_c == out_c and per_group == 1 and group > 1
    if not (group == 1 and per_group == in_c) and not depthwise:
        raise b.fail(node, f"group {group} with weights {weights.shape}: only convolutions and depthwise "
                     "convolutions (group == channels, multiplier 1) are supported")
    _check_window(b, node, attrs, (kh, kw))
    weights, scales = _weights(b, node, 3, out_c)
    quant = b.quantization(node, 6)
    stride = attrs["strides"]
    top, left, bottom, right = attrs["pads"]
    padding = ir.Padding(top=top, bottom=bottom, left=left, right=right)
    out_h = ir.conv_output_size(in_h, kh, stride[0], top, bottom)
    out_w = ir.conv_output_size(in_w, kw, stride[1], left, right)
    if out_h < 1 or out_w < 1:
        raise b.fail(node, "the output would be empty")
    weight_quant = ir.Quantization(scales, (0,) * out_c, axis=3 if depthwise else 0)
    if depthwise:  # [C, 1, kh, kw] -> [1, kh, kw, C]
        w = ir.Tensor(f"t{node.position}_weights", (1, kh, kw, out_c), "int8", weight_quant,
                      np.ascontiguousarray(weights.transpose(1, 2, 3, 0)))
    else:  # [M, C, kh, kw] -> [M, kh, kw, C]
        w = ir.Tensor(f"t{node.position}_weights", (out_c, kh, kw, in_c), "int8", weight_quant,
                      np.ascontiguousarray(weights.transpose(0, 2, 3, 1)))
    output = b.new_activation(node, (1, out_h, out_w, out_c), quant)
    op_class = ir.DepthwiseConv2D if depthwise else ir.Conv2D
    return op_class(input=x, output=output, index=node.position, arithmetic=ORT, weights=w,
                    bias=_bias(b, node, 8, out_c), stride=tuple(stride), padding=padding)


def _check_window(b: _Builder, node: OnnxNode, attrs: dict, kernel: tuple[int, int]) -> None:
    if attrs["auto_pad"] != "NOTSET":
        raise b.fail(node, "auto_pad is not supported; the exporters write explicit pads")
    if attrs["kernel_shape"] is not None and tuple(attrs["kernel_shape"]) != kernel:
        raise b.fail(node, f"kernel_shape {attrs['kernel_shape']} does not match the weights' {kernel}")
    if not all(1 <= k <= MAX_KERNEL for k in kernel):
        raise b.fail(node, f"kernel {kernel} is outside 1..{MAX_KERNEL}")
    if tuple(attrs["dilations"]) != (1, 1):
        raise b.fail(node, f"dilations {attrs['dilations']} are not supported (only 1)")
    if len(attrs["strides"]) != 2 or not all(1 <= s <= MAX_STRIDE for s in attrs["strides"]):
        raise b.fail(node, f"strides {attrs['strides']} are not 2 values in 1..{MAX_STRIDE}")
    pads = attrs["pads"]
    if len(pads) != 4 or not all(0 <= p < k for p, k in zip(pads, kernel * 2)):
        raise b.fail(node, f"pads {pads} are not 4 values each below the kernel size")


def _add(b: _Builder, node: OnnxNode) -> ir.Op:
    b.attributes(node, {})
    x, other = b.activation(node, 0), b.activation(node, 3)
    b.check_input_quantization(node, x, 1)
    b.check_input_quantization(node, other, 4)
    if x.shape != other.shape:
        raise b.fail(node, f"inputs of shapes {x.shape} and {other.shape}: broadcasting is not supported")
    quant = b.quantization(node, 6)
    output = b.new_activation(node, x.shape, quant)
    return ir.Add(input=x, output=output, index=node.position, arithmetic=ORT, other=other)


def _global_average_pool(b: _Builder, node: OnnxNode) -> ir.Op:
    b.attributes(node, {"channels_last": 0})
    if node.attributes.get("channels_last", 0) != 0:
        raise b.fail(node, "channels_last is not supported")
    x = b.activation(node, 0)
    b.check_input_quantization(node, x, 1)
    if len(x.shape) != 4:
        raise b.fail(node, "the input must be [1, C, H, W]")
    quant = b.quantization(node, 3)
    output = b.new_activation(node, (1, 1, 1, x.shape[3]), quant)
    return ir.Mean(input=x, output=output, index=node.position, arithmetic=ORT, keep_dims=True)


def _float_mean(b: _Builder, node: OnnxNode) -> ir.Op:
    """The dynamo exporter's head as ONNX Runtime runs it (onnx_qdq.fuse_float_means): the
    mean over H and W in float32 of the dequantized input, quantized again."""
    attrs = b.attributes(node, {"keepdims": 1, "axes": None, "channels": -1})
    x = b.activation(node, 0)
    b.check_input_quantization(node, x, 1)
    if len(x.shape) != 4 or {a % 4 for a in attrs["axes"]} != {2, 3} or len(attrs["axes"]) != 2:
        raise b.fail(node, f"only a ReduceMean of a [1, C, H, W] tensor over axes (2, 3) is supported, not "
                     f"over {attrs['axes']}")
    channels = x.shape[3]
    if attrs["channels"] not in (-1, channels):
        raise b.fail(node, f"the Reshape after ReduceMean makes [1, {attrs['channels']}] of {channels} channels")
    quant = b.quantization(node, 3)
    keep_dims = bool(attrs["keepdims"])
    output = b.new_activation(node, (1, 1, 1, channels) if keep_dims else (1, channels), quant)
    return ir.FloatMean(input=x, output=output, index=node.position, arithmetic=ORT, keep_dims=keep_dims)


def _flatten(b: _Builder, node: OnnxNode) -> ir.Op:
    attrs = b.attributes(node, {"axis": 1})
    x = b.activation(node, 0)
    if attrs["axis"] != 1 or len(x.shape) != 4 or x.shape[1:3] != (1, 1):
        raise b.fail(node, "only Flatten(axis=1) of a [1, C, 1, 1] tensor is supported")
    output = ir.Tensor(f"t{node.position}", (1, x.shape[3]), "int8", x.quant)
    return ir.Reshape(input=x, output=output, index=node.position, arithmetic=ORT)


def _gemm(b: _Builder, node: OnnxNode) -> ir.Op:
    attrs = b.attributes(node, {"alpha": 1.0, "transA": 0, "transB": 0})
    if attrs["alpha"] != 1.0 or attrs["transA"] != 0 or attrs["transB"] not in (0, 1):
        raise b.fail(node, "only alpha 1 and transA 0 are supported")
    x = b.activation(node, 0)
    b.check_input_quantization(node, x, 1)
    if len(x.shape) != 2:
        raise b.fail(node, "the input must be [1, features] (a Flatten before it)")
    weights = b.constant(node, 3, (np.int8,), what="the weights")
    if weights.ndim != 2:
        raise b.fail(node, "the weights must be 2-D")
    if not attrs["transB"]:
        weights = np.ascontiguousarray(weights.T)
    units, depth = weights.shape
    if depth != x.shape[1]:
        raise b.fail(node, f"weights for {depth} features, input has {x.shape[1]}")
    _, scales = _weights(b, node, 3, units)
    if len(node.inputs) < 9 or not node.inputs[8]:
        raise b.fail(node, "a QGemm without an output scale and zero point (float output) is not supported")
    quant = b.quantization(node, 7)
    w = ir.Tensor(f"t{node.position}_weights", (units, depth), "int8",
                  ir.Quantization(scales, (0,) * units), weights)
    output = b.new_activation(node, (1, units), quant)
    return ir.FullyConnected(input=x, output=output, index=node.position, arithmetic=ORT, weights=w,
                             bias=_bias(b, node, 6, units))


HANDLERS = {
    ("", "QuantizeLinear"): _quantize_linear,
    ("", "DequantizeLinear"): _dequantize_linear,
    ("", "QLinearConv"): _conv,
    (MICROSOFT_DOMAIN, "QLinearAdd"): _add,
    (MICROSOFT_DOMAIN, "QLinearGlobalAveragePool"): _global_average_pool,
    ("", "Flatten"): _flatten,
    (FUSED_DOMAIN, FLOAT_MEAN): _float_mean,
    (MICROSOFT_DOMAIN, "QGemm"): _gemm,
}
