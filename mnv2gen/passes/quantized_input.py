"""`--quantized-input`: the C takes the first QuantizeLinear's output instead of the model's
float input, so a camera's bytes go in without a float frame in RAM.

An ONNX model starts with a QuantizeLinear of its float NCHW input. This rewrite drops it:
the graph's input becomes that QuantizeLinear's output, NHWC, in the element type the model
stores (int8 or uint8), with its scale and zero point (the README gives them). The IR keeps
a uint8 model's activations as int8 shifted by -128, so for those a QUANTIZE from the stored
uint8 bytes remains: it subtracts 128 row by row inside the first pipeline. No arithmetic of
the model changes: what follows the QuantizeLinear sees the same bytes.
"""

from __future__ import annotations

from .. import ir
from ..errors import UserError


def take_quantized_input(graph: ir.Graph) -> ir.Graph:
    first = graph.ops[0] if graph.ops else None
    if (graph.arithmetic is not ir.Arithmetic.ONNXRUNTIME or not isinstance(first, ir.Quantize)
            or not first.from_nchw or len(graph.consumers(graph.input)) != 1):
        raise UserError("--quantized-input is for quantized ONNX models, whose float input the first "
                        "QuantizeLinear quantizes; this model's input is not quantized by its first op: "
                        "drop the flag", source=graph.source)
    quantized = first.output
    quant = quantized.quant
    if quant.model_offset == 0:  # int8: the QuantizeLinear's output is the input as it is
        return _with_input(graph, quantized, graph.ops[1:])
    stored = ir.Tensor("input", quantized.shape, ir.DType.UINT8,
                       quant=ir.Quantization(quant.scale, (quant.zero_point[0] + quant.model_offset,)))
    shift = ir.Quantize(input=stored, output=quantized, index=first.index, arithmetic=first.arithmetic)
    return _with_input(graph, stored, [shift] + graph.ops[1:])


def _with_input(graph: ir.Graph, tensor: ir.Tensor, ops: list[ir.Op]) -> ir.Graph:
    result = ir.Graph(ops=ops, input=tensor, output=graph.output, source=graph.source,
                      source_sha256=graph.source_sha256)
    result.verify()
    return result
