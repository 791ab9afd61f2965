"""The MobileNetV2 paper's memory bound (section 5).

M(G) = max over ops of (bytes of all the op's inputs + bytes of its outputs + its scratch).
For a layer-by-layer schedule no scratch is needed; RESHAPE moves no data and is skipped.
Once bottlenecks are fused, their expanded tensor is disposable and does not count.
"""

from __future__ import annotations

from .. import ir


def op_working_set(op: ir.Op) -> int:
    return sum(t.nbytes for t in op.activation_inputs()) + op.output.nbytes


def paper_bound(graph: ir.Graph) -> tuple[int, ir.Op | None]:
    """The bound and the op that sets it."""
    best, where = 0, None
    for op in graph.ops:
        if isinstance(op, ir.Reshape):
            continue
        size = op_working_set(op)
        if size > best:
            best, where = size, op
    return best, where
