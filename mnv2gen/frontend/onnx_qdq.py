"""QDQ models -> the QOperator nodes ONNX Runtime runs them as.

A QDQ model (onnxruntime.quantization with QuantFormat.QDQ) keeps float Conv, Add,
GlobalAveragePool, Flatten and Gemm, each reading DequantizeLinear outputs (of activations,
or of constant int8 weights and int32 biases) and feeding one QuantizeLinear. At
ORT_ENABLE_EXTENDED and above, ONNX Runtime fuses each such group into QLinearConv,
QLinearAdd, QLinearGlobalAveragePool, Flatten or QGemm and runs those integer kernels; this
module does the same fusion on the node list, so `onnx.py` reads both formats with one set of
checks. Anything that is not such a group is refused, naming its node: a float op left in
the graph has no integer kernel to equal.

One float op is kept, because ONNX Runtime keeps it: the dynamo exporter's head,
DequantizeLinear -> ReduceMean(H, W) -> Reshape or Flatten -> QuantizeLinear, which
onnxruntime.quantization leaves in float in both formats. `fuse_float_means` turns each such
chain into one node of this module's own domain (`FUSED_DOMAIN`, which no file may use), read
as `ir.FloatMean`: ONNX Runtime's float arithmetic, repeated step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import ModelError
from .onnx_model import MICROSOFT_DOMAIN, OnnxModel, OnnxNode

FLOAT_OPS = ("Conv", "Add", "GlobalAveragePool", "Flatten", "Gemm")
FUSED_DOMAIN = "mnv2gen.fused"  # nodes made here; onnx_model refuses them in a file
FLOAT_MEAN = "DequantizeReduceMeanQuantize"


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


class _NodeRewrite:
    """A pass over the model's nodes, knowing who reads each tensor."""

    def __init__(self, model: OnnxModel):
        self.model = model
        self.consumers: dict[str, list[OnnxNode]] = {}
        for node in model.nodes:
            for name in node.inputs:
                self.consumers.setdefault(name, []).append(node)

    def fail(self, node: OnnxNode, message: str) -> ModelError:
        return ModelError(f"{node.label()}: {message}", source=self.model.source)


class _Fuser(_NodeRewrite):
    def __init__(self, model: OnnxModel):
        super().__init__(model)
        self.dequantized: dict[str, _Quantized] = {}  # float name -> its DequantizeLinear's inputs

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


# --------------------------------------------------------------------------- the dynamo head


def fuse_float_means(model: OnnxModel) -> OnnxModel:
    """Each DequantizeLinear -> ReduceMean -> (Reshape | Flatten) -> QuantizeLinear chain as
    one FLOAT_MEAN node at the QuantizeLinear's position (its output, its name), inputs
    [x, x_scale, x_zero_point, y_scale, y_zero_point], attributes `keepdims` (0: a flattened
    [1, C] output) and `axes` (as the ReduceMean gave them, attribute or constant input)."""
    if not any(node.op_type == "ReduceMean" and node.domain == "" for node in model.nodes):
        return model
    chains = _MeanChains(model)
    return replace(model, nodes=chains.fused())


class _MeanChains(_NodeRewrite):
    def __init__(self, model: OnnxModel):
        super().__init__(model)
        self.producer = {node.outputs[0]: node for node in model.nodes}

    def fused(self) -> list[OnnxNode]:
        dropped: set[int] = set()  # positions of the chains' first three nodes
        fused: dict[int, OnnxNode] = {}  # a chain's QuantizeLinear's position -> the chain
        for node in self.model.nodes:
            if node.op_type == "ReduceMean" and node.domain == "":
                dequantize, mean, shape, quantize = self._chain(node)
                dropped.update(part.position for part in (dequantize, mean, shape) if part is not None)
                fused[quantize.position] = self._fuse(dequantize, mean, shape, quantize)
        return [fused.get(node.position, node) for node in self.model.nodes if node.position not in dropped]

    def _only_reader(self, node: OnnxNode) -> OnnxNode:
        readers = self.consumers.get(node.outputs[0], [])
        if len(readers) != 1 or node.outputs[0] == self.model.output_name:
            raise self.fail(node, "a float ReduceMean must be read by exactly one node (the chain "
                            "DequantizeLinear -> ReduceMean -> Reshape -> QuantizeLinear)")
        return readers[0]

    def _chain(self, mean: OnnxNode) -> tuple[OnnxNode, OnnxNode, OnnxNode | None, OnnxNode]:
        dequantize = self.producer.get(mean.inputs[0] if mean.inputs else "")
        if dequantize is None or (dequantize.domain, dequantize.op_type) != ("", "DequantizeLinear"):
            raise self.fail(mean, "a float ReduceMean must read a DequantizeLinear's output")
        self._only_reader(dequantize)
        after = self._only_reader(mean)
        shape = None
        if after.domain == "" and after.op_type in ("Reshape", "Flatten"):
            shape, after = after, self._only_reader(after)
        if (after.domain, after.op_type) != ("", "QuantizeLinear"):
            raise self.fail(mean, "a float ReduceMean must be quantized again (DequantizeLinear -> ReduceMean "
                            "-> Reshape -> QuantizeLinear): only integer graphs compile")
        return dequantize, mean, shape, after

    def _fuse(self, dequantize: OnnxNode, mean: OnnxNode, shape: OnnxNode | None, quantize: OnnxNode) -> OnnxNode:
        if len(dequantize.inputs) != 3 or len(quantize.inputs) != 3 or not all(dequantize.inputs + quantize.inputs):
            raise self.fail(quantize, "expected an input, a scale and a zero point")
        if dequantize.attributes.get("axis", 1) != 1 or quantize.attributes.get("axis", 1) != 1:
            raise self.fail(quantize, "only per-tensor quantization of activations is supported")
        attributes = {"keepdims": mean.attributes.get("keepdims", 1), "axes": self._axes(mean)}
        if shape is not None:
            attributes.update(keepdims=0, channels=self._flattened_channels(shape))
        unknown = set(mean.attributes) - {"keepdims", "axes", "noop_with_empty_axes"}
        if unknown or mean.attributes.get("noop_with_empty_axes", 0) != 0:
            raise self.fail(mean, "ReduceMean with attributes other than axes and keepdims is not supported")
        return replace(quantize, op_type=FLOAT_MEAN, domain=FUSED_DOMAIN, attributes=attributes,
                       inputs=[*dequantize.inputs, *quantize.inputs[1:]])

    def _axes(self, mean: OnnxNode) -> tuple[int, ...]:
        """The reduced axes, from the attribute (opsets below 18) or the constant input 1."""
        if len(mean.inputs) > 1 and mean.inputs[1]:
            axes = self.model.constants.get(mean.inputs[1])
            if axes is None or axes.dtype != np.int64 or axes.ndim != 1:
                raise self.fail(mean, "the axes must be a constant int64 list")
            return tuple(int(a) for a in axes)
        axes = mean.attributes.get("axes", ())
        if not isinstance(axes, tuple):
            raise self.fail(mean, "the axes must be a list of ints")
        return axes

    def _flattened_channels(self, node: OnnxNode) -> int:
        """Reshape to [1, -1] or [1, C] (C checked by the builder: returned, -1 for any), or
        Flatten(axis=1): the pooled [1, C, 1, 1] as [1, C]."""
        if node.op_type == "Flatten":
            if set(node.attributes) - {"axis"} or node.attributes.get("axis", 1) != 1:
                raise self.fail(node, "only Flatten(axis=1) is supported after ReduceMean")
            return -1
        shape = self.model.constants.get(node.inputs[1]) if len(node.inputs) == 2 else None
        if set(node.attributes) - {"allowzero"} or shape is None or shape.dtype != np.int64 or shape.shape != (2,) \
                or shape[0] != 1 or not (shape[1] == -1 or shape[1] > 0):
            raise self.fail(node, "only a Reshape to the constant shape [1, -1] or [1, channels] is supported "
                            "after ReduceMean")
        return int(shape[1])
