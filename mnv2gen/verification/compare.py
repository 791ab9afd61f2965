"""What "bit-exact" means, defined once: the inputs every check feeds, how two engines'
outputs are compared, and the verdict over a batch.

Every comparison in mnv2gen (`verify` on the host, `run` under QEMU, the demo, the tests and
the benchmarks) goes through these functions, so they cannot disagree on what passed.
"""

from __future__ import annotations

import numpy as np

from .. import ir


def numpy_dtype(t: ir.Tensor) -> np.dtype:
    return np.dtype(ir.DTYPES[t.dtype][0])


def make_inputs(graph: ir.Graph, count: int, seed: int = 0) -> np.ndarray:
    """`count` random inputs plus the two extremes (all minimum, all maximum)."""
    t = graph.input
    rng = np.random.default_rng(seed)
    shape = (count, *t.shape)
    dtype = numpy_dtype(t)
    if t.dtype == "float32":
        # Span the range the first QUANTIZE can represent, and a little beyond it.
        low, high = _float_input_range(graph)
        random = rng.uniform(low * 1.1, high * 1.1, size=shape).astype(np.float32)
        extremes = np.stack([np.full(t.shape, low, np.float32), np.full(t.shape, high, np.float32)])
    else:
        info = np.iinfo(dtype)
        random = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        extremes = np.stack([np.full(t.shape, info.min, dtype), np.full(t.shape, info.max, dtype)])
    return np.concatenate([random, extremes])


def _float_input_range(graph: ir.Graph) -> tuple[float, float]:
    consumer = next((op for op in graph.ops if op.input is graph.input), None)
    if consumer is not None and consumer.output.quant is not None:
        q = consumer.output
        return q.scale * (-128 - q.zero_point), q.scale * (127 - q.zero_point)
    return -1.0, 1.0


def model_inputs(graph: ir.Graph, inputs: np.ndarray) -> np.ndarray:
    """`inputs` (the C's) as the model file takes them. They differ only for an ONNX model
    compiled with --quantized-input: the C takes the first QuantizeLinear's output q (NHWC,
    int8 or uint8), the model its float NCHW input. Each q becomes x = fl((q - zp) * scale),
    which that QuantizeLinear maps back to q exactly (x / scale is (q - zp)(1 + e) with
    |e| <= 2^-23 and |q - zp| <= 255, so it rounds to q - zp). That is checked here on every
    value: the oracle then runs the unmodified model on inputs proven to reach the C's bytes."""
    t = graph.input
    if graph.arithmetic is not ir.Arithmetic.ONNXRUNTIME or t.dtype is ir.DType.FLOAT32:
        return inputs  # a .tflite's input, or an ONNX model's float input: the model takes the C's
    scale, zero_point, info = np.float32(t.scale), t.zero_point, np.iinfo(numpy_dtype(t))
    floats = (inputs.astype(np.int32) - zero_point).astype(np.float32) * scale
    back = np.clip(np.rint(floats / scale) + zero_point, info.min, info.max).astype(inputs.dtype)
    if not np.array_equal(back, inputs):
        raise AssertionError("--quantized-input: a float input does not quantize back to the C's bytes")
    return np.ascontiguousarray(floats.transpose(0, 1, 4, 2, 3))  # [n, 1, H, W, C] -> [n, 1, C, H, W]


def same_bytes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per input (first axis): are the bytes identical? (Bitwise, so float NaNs compare too.)"""
    a = np.ascontiguousarray(a).reshape(len(a), -1).view(np.uint8)
    b = np.ascontiguousarray(b).reshape(len(b), -1).view(np.uint8)
    return (a == b).all(axis=1)


def all_identical(inputs: int, matched: int, aborted: int) -> bool:
    """The verdict: every input the reference could run gave identical bytes, and at least
    one did (a reference that ran nothing proves nothing). Inputs on which the reference
    engine itself died (TFLite's reference SOFTMAX asserts on some flat inputs) have no
    reference output and are neither matched nor failed."""
    return matched > 0 and matched + aborted == inputs
