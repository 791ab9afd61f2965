"""QDQ models -> the QOperator nodes ONNX Runtime runs them as.

A QDQ model (onnxruntime.quantization with QuantFormat.QDQ) keeps float Conv, Add,
GlobalAveragePool, Flatten and Gemm, each reading DequantizeLinear outputs (of activations,
or of constant int8 weights and int32 biases) and feeding one QuantizeLinear. At
ORT_ENABLE_EXTENDED and above, ONNX Runtime fuses each such group into QLinearConv,
QLinearAdd, QLinearGlobalAveragePool, Flatten or QGemm and runs those integer kernels; this
module does the same fusion on the node list, so `onnx.py` reads both formats with one set of
checks. Anything that is not such a group is refused, naming its node: a float op left in
the graph has no integer kernel to equal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ModelError
from .onnx_model import MICROSOFT_DOMAIN, OnnxModel, OnnxNode

FLOAT_OPS = ("Conv", "Add", "GlobalAveragePool", "Flatten", "Gemm")


@dataclass(frozen=True)
class _Quantized:
    """A float tensor that is DequantizeLinear(value, scale, zero_point), by names."""

    value: str
    scale: str
    zero_point: str


def is_qdq(model: OnnxModel) -> bool:
    """Whether the model keeps float ops between Q/DQ pairs (Flatten alone says nothing:
    QOperator models have it too)."""
    return any(node.domain == "" and node.op_type in FLOAT_OPS and node.op_type != "Flatten" for node in model.nodes)


def qdq_to_qoperator(model: OnnxModel) -> OnnxModel:
    fuser = _Fuser(model)
    return replace(model, nodes=fuser.fused())


class _Fuser:
    def __init__(self, model: OnnxModel):
        self.model = model
        self.dequantized: dict[str, _Quantized] = {}  # float name -> its DequantizeLinear's inputs
        self.consumers: dict[str, list[OnnxNode]] = {}
        for node in model.nodes:
            for name in node.inputs:
                self.consumers.setdefault(name, []).append(node)

    def fail(self, node: OnnxNode, message: str) -> ModelError:
        return ModelError(f"{node.label()}: {message}", source=self.model.source)

    def fused(self) -> list[OnnxNode]:
        nodes: list[OnnxNode] = []
        absorbed: set[int] = set()  # positions of the QuantizeLinear nodes fused into an op
        for node in self.model.nodes:
            if node.position in absorbed:
                continue
            if node.op_type == "DequantizeLinear" and node.domain == "" and node.outputs[0] != self.model.output_name:
                self.dequantized[node.outputs[0]] = _Quantized(*self._three_inputs(node))
            elif node.domain == "" and node.op_type in FLOAT_OPS:
                quantize = self._single_quantize(node)
                absorbed.add(quantize.position)
                nodes.append(self._fuse(node, quantize))
            else:
                nodes.append(node)
        return nodes

    def _three_inputs(self, node: OnnxNode) -> tuple[str, str, str]:
        if len(node.inputs) != 3 or not all(node.inputs):
            raise self.fail(node, "expected an input, a scale and a zero point")
        return tuple(node.inputs)  # type: ignore[return-value]

    def _single_quantize(self, node: OnnxNode) -> OnnxNode:
        readers = self.consumers.get(node.outputs[0], [])
        if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or node.outputs[0] == self.model.output_name:
            raise self.fail(node, "a float op whose output is not quantized by exactly one QuantizeLinear is "
                            "not supported (only integer graphs compile)")
        return readers[0]

    def source(self, node: OnnxNode, slot: int) -> _Quantized:
        name = node.inputs[slot] if slot < len(node.inputs) else ""
        quantized = self.dequantized.get(name)
        if quantized is None:
            raise self.fail(node, f"input {slot} is not the output of a DequantizeLinear")
        return quantized

    def _fuse(self, node: OnnxNode, quantize: OnnxNode) -> OnnxNode:
        _, y_scale, y_zero_point = self._three_inputs(quantize)
        out = quantize.outputs[0]
        if node.op_type == "Flatten":
            x = self.source(node, 0)
            if not self._same_constants(x.scale, y_scale) or not self._same_constants(x.zero_point, y_zero_point):
                raise self.fail(node, "a Flatten that requantizes is not supported")
            return replace(node, inputs=[x.value], outputs=[out])
        if node.op_type == "Add":
            a, b = self.source(node, 0), self.source(node, 1)
            return replace(node, op_type="QLinearAdd", domain=MICROSOFT_DOMAIN, outputs=[out],
                           inputs=[a.value, a.scale, a.zero_point, b.value, b.scale, b.zero_point, y_scale, y_zero_point])
        if node.op_type == "GlobalAveragePool":
            x = self.source(node, 0)
            return replace(node, op_type="QLinearGlobalAveragePool", domain=MICROSOFT_DOMAIN, outputs=[out],
                           inputs=[x.value, x.scale, x.zero_point, y_scale, y_zero_point])
        x, w = self.source(node, 0), self.source(node, 1)
        self._check_weight_axis(node, w)
        bias = self._bias(node, x, w)
        if node.op_type == "Conv":
            return replace(node, op_type="QLinearConv", outputs=[out],
                           inputs=[x.value, x.scale, x.zero_point, w.value, w.scale, w.zero_point, y_scale,
                                   y_zero_point, bias])
        attributes = {k: v for k, v in node.attributes.items() if k != "beta"}
        if node.attributes.get("beta", 1.0) != 1.0:
            raise self.fail(node, "only beta 1 is supported")
        return replace(node, op_type="QGemm", domain=MICROSOFT_DOMAIN, outputs=[out], attributes=attributes,
                       inputs=[x.value, x.scale, x.zero_point, w.value, w.scale, w.zero_point, bias, y_scale,
                               y_zero_point])

    def _same_constants(self, a: str, b: str) -> bool:
        constants = self.model.constants
        return a in constants and b in constants and constants[a].tobytes() == constants[b].tobytes() \
            and constants[a].dtype == constants[b].dtype

    def _check_weight_axis(self, node: OnnxNode, w: _Quantized) -> None:
        dequantize = next(n for n in self.model.nodes if n.outputs[0] == node.inputs[1])
        scales = self.model.constants.get(w.scale)
        if scales is not None and scales.size > 1 and dequantize.attributes.get("axis", 1) != 0:
            raise self.fail(node, "per-channel weights must be quantized along their output axis (0)")

    def _bias(self, node: OnnxNode, x: _Quantized, w: _Quantized) -> str:
        """The int32 bias, whose scale must be fl(x_scale * w_scale[c]) bit for bit and zero
        point 0: else ONNX Runtime does not fuse the group and runs it in float."""
        if len(node.inputs) < 3 or not node.inputs[2]:
            return ""
        bias = self.source(node, 2)
        constants = self.model.constants
        scales = constants.get(bias.scale)
        x_scale, w_scale, zero_points = constants.get(x.scale), constants.get(w.scale), constants.get(bias.zero_point)
        if any(v is None for v in (scales, x_scale, w_scale, zero_points)) or scales.dtype != np.float32:
            raise self.fail(node, "the bias must be a constant int32 tensor with constant scales")
        expected = (np.float32(x_scale.reshape(-1)[0]) * w_scale.reshape(-1).astype(np.float32)).astype(np.float32)
        count = max(expected.size, scales.size)
        try:
            same = np.broadcast_to(expected, (count,)).tobytes() == np.broadcast_to(scales.reshape(-1), (count,)).tobytes()
        except ValueError:  # as many scales as neither one nor the channels
            same = False
        if not same:
            raise self.fail(node, "the bias scale is not x_scale * w_scale bit for bit")
        if (zero_points != 0).any():
            raise self.fail(node, "the bias zero point must be 0")
        return bias.value
