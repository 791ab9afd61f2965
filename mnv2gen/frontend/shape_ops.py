"""Fold the constant shape arithmetic the TFLite converter leaves in some models.

A model exported with a dynamic batch computes RESHAPE's target shape at run time:
SHAPE(x) -> STRIDED_SLICE (take the batch) -> PACK (with the other dims) -> RESHAPE. Every
input shape is static once we compile for batch 1, so these ops are evaluated here, their
outputs become constants, and they disappear from the graph. RESHAPE itself then only
needs its output tensor's (static) shape.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import ir
from ..errors import ModelError
from .flatbuffer import RawOp

Fail = Callable[[str], ModelError]


def fold_shape_ops(ops: list[RawOp], tensors: list[ir.Tensor], fail: Fail) -> list[RawOp]:
    """Evaluate SHAPE/STRIDED_SLICE/PACK whose inputs are known; return the remaining ops."""
    kept = []
    for op in ops:
        evaluate = FOLDERS.get(op.name)
        if evaluate is None:
            kept.append(op)
            continue
        where = f"op {op.index} ({op.name})"
        inputs = [tensors[i] for i in op.inputs if i != -1]
        if op.name != "SHAPE" and not all(t.is_constant for t in inputs):
            raise fail(f"{where} computes a shape from run-time data; only shape arithmetic "
                       "that is constant at compile time can be folded")
        if not inputs or len(op.outputs) != 1:
            raise fail(f"{where} has {len(inputs)} inputs and {len(op.outputs)} outputs")
        try:
            value = evaluate(op, inputs)
        except (ValueError, IndexError) as exc:
            raise fail(f"{where} cannot be evaluated at compile time: {exc}") from None
        out = tensors[op.outputs[0]]
        if tuple(value.shape) != tuple(out.shape) and not (value.ndim == 0 and out.shape in ((), (1,))):
            raise fail(f"{where} computes shape {list(value.shape)} but its output tensor "
                       f"{out.name!r} declares {list(out.shape)}")
        out.data = value.astype(out.dtype.numpy_type).reshape(out.shape)
    return kept


def _shape(op: RawOp, inputs: list[ir.Tensor]) -> np.ndarray:
    return np.array(inputs[0].shape, dtype=np.int64)


def _strided_slice(op: RawOp, inputs: list[ir.Tensor]) -> np.ndarray:
    if len(inputs) != 4:
        raise ValueError("expected input, begin, end and strides")
    data, begin, end, strides = (t.data.reshape(-1) if i else t.data for i, t in enumerate(inputs))
    if data.ndim != 1:
        raise ValueError("only 1-D slices (of shape vectors) are supported")
    if op.option("EllipsisMask", 0) or op.option("NewAxisMask", 0):
        raise ValueError("ellipsis and new-axis masks are not supported")
    b = None if op.option("BeginMask", 0) & 1 else int(begin[0])
    e = None if op.option("EndMask", 0) & 1 else int(end[0])
    s = int(strides[0])
    if s == 0:
        raise ValueError("stride 0")
    if op.option("ShrinkAxisMask", 0) & 1:
        index = int(begin[0])
        if not -len(data) <= index < len(data):
            raise ValueError(f"index {index} is outside a vector of {len(data)}")
        return np.array(data[index])
    return data[b:e:s]


def _pack(op: RawOp, inputs: list[ir.Tensor]) -> np.ndarray:
    axis = op.option("Axis", 0)
    values = [t.data for t in inputs]
    if any(v.shape != values[0].shape for v in values):
        raise ValueError("packed values differ in shape")
    if not -values[0].ndim - 1 <= axis <= values[0].ndim:
        raise ValueError(f"axis {axis} out of range")
    return np.stack(values, axis=axis)


FOLDERS = {"SHAPE": _shape, "STRIDED_SLICE": _strided_slice, "PACK": _pack}
