"""Lower `ir.FloatMean`, the dynamo exporter's float head, to templates/ref/ort.c.j2's
ort_float_mean_s8: ONNX Runtime's DequantizeLinear -> ReduceMean -> QuantizeLinear with its
float32 steps, the sum in the order ONNX Runtime's Eigen takes (see the kernel). Only the
scales and zero points are constants: every float step depends on the input."""

from __future__ import annotations

from .. import ir
from .lower import Build, Layer
from .values import Float32


def _float_mean(op: ir.FloatMean, number: int, build: Build) -> Layer:
    _, h, w, channels = op.input.shape
    layer = Layer(number, op, "ort_float_mean_s8", "ort_float_mean_params")
    layer.params.update(pixels=h * w, channels=channels, input_zero_point=op.input.zero_point,
                        output_zero_point=op.output.zero_point, input_scale=Float32(op.input.scale),
                        output_scale=Float32(op.output.scale))
    return layer


FLOAT_MEAN_LOWERINGS = {ir.FloatMean: _float_mean}
