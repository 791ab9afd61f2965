"""Whole-model checks that run before any tensor or op is examined, so a model mnv2gen
cannot compile is refused for what it *is*, in a sentence that says what to do, rather than
for the first tensor or op that happens to trip a check:

- a model that is not fully int8 (float, dynamic-range, float16 or 16-bit activations) is
  named as such, with the converter settings that make a fully int8 one;
- every unsupported op is listed at once (name, count, first index), so a MobileNetV3 is
  seen to need HARD_SWISH and its squeeze-excite MULs, not just the first MUL in the file.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import Callable, Iterable

import tflite

from ..errors import ModelError
from .flatbuffer import RawModel

# The element types that tell a model's kind.
FLOAT32, FLOAT16, INT16, INT8 = (tflite.TensorType.FLOAT32, tflite.TensorType.FLOAT16, tflite.TensorType.INT16,
                                 tflite.TensorType.INT8)

# Float activations are allowed only at the edges: a float input into QUANTIZE, a float
# output out of DEQUANTIZE (the converter's inference_input_type/output_type float32).
EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}

HOW_TO_CONVERT = ("mnv2gen compiles fully int8-quantized models: convert with a representative dataset, "
                  "converter.optimizations = [tf.lite.Optimize.DEFAULT] and "
                  "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] "
                  "(and inference_input_type = inference_output_type = tf.int8)")


class ModelKind(enum.Enum):
    """What a model that is not fully int8 is, in the words of TFLite's documentation."""

    FLOAT = "a float model (float32 weights and activations)"
    FLOAT16 = "a float16-quantized model (float16 weights, float32 activations)"
    DYNAMIC_RANGE = ("a dynamic-range quantized model (int8 weights, float32 activations, "
                     "quantized on the fly)")
    INT16_ACTIVATIONS = ("a 16x8-quantized model (16-bit activations, int8 weights: "
                         "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)")


def _float_activation_ops(raw: RawModel) -> list[int]:
    """Indices of the ops (other than QUANTIZE/DEQUANTIZE) that read or write a float32
    tensor that is not a constant: ops that compute in float."""
    def is_float_activation(i: int) -> bool:
        return i >= 0 and raw.tensors[i].type_code == FLOAT32 and not _buffer_present(raw, raw.tensors[i].buffer)

    return [op.index for op in raw.ops if op.name not in EDGE_OPS
            and any(is_float_activation(i) for i in op.inputs + op.outputs)]


def _buffer_present(raw: RawModel, buffer: int) -> bool:
    return 0 <= buffer < len(raw.buffers) and raw.buffers[buffer] is not None


def model_kind(raw: RawModel) -> ModelKind | None:
    """None for a model whose arithmetic is int8 (the kind mnv2gen compiles)."""
    activations = [t for t in raw.tensors if not _buffer_present(raw, t.buffer)]
    constants = [t for t in raw.tensors if _buffer_present(raw, t.buffer)]
    if any(t.type_code == INT16 for t in activations):
        return ModelKind.INT16_ACTIVATIONS
    if any(t.type_code == FLOAT16 for t in constants):
        return ModelKind.FLOAT16
    if not _float_activation_ops(raw):
        return None
    if any(t.type_code == INT8 for t in constants):
        return ModelKind.DYNAMIC_RANGE
    return ModelKind.FLOAT


def check_fully_int8(raw: RawModel, fail: Callable[[str], ModelError]) -> None:
    kind = model_kind(raw)
    if kind is not None:
        raise fail(f"this model is not fully int8: it is {kind.value}. {HOW_TO_CONVERT}")


def check_supported_ops(raw: RawModel, supported: Iterable[str], fail: Callable[[str], ModelError],
                        constant_only: Iterable[str] = ()) -> None:
    """Name every unsupported op of the model, with its count and first index. Ops in
    `constant_only` are supported only with a constant operand (MUL by a constant, not of
    two activations: a squeeze-excite's MULs are named here with the rest)."""
    supported, constant_only = set(supported), set(constant_only)

    def has_constant(op) -> bool:
        return any(0 <= i < len(raw.tensors) and _buffer_present(raw, raw.tensors[i].buffer) for i in op.inputs)

    unsupported = [op for op in raw.ops
                   if op.name not in supported or (op.name in constant_only and not has_constant(op))]
    if not unsupported:
        return
    counts = Counter(op.name for op in unsupported)
    first = {}
    for op in unsupported:
        first.setdefault(op.name, op.index)
    listed = ", ".join(f"{name} x{counts[name]} (first: op {first[name]})" for name in first)
    raise fail(f"{len(unsupported)} of the model's {len(raw.ops)} ops are of types mnv2gen does not "
               f"support: {listed}. Supported ops: "
               + ", ".join(f"{name} (by a constant)" if name in constant_only else name for name in sorted(supported)))
