"""The MobileNetV2 paper's memory bound (section 5).

M(G) = max over ops of (bytes of all the op's inputs + bytes of its outputs + its scratch),
where an inverted residual counts as one op whose expanded tensor is disposable. So the
bound is taken over the graph with its bottlenecks fused (and explicit PADs folded), each
op counting its external inputs and its output; RESHAPE moves no data and is skipped. The
ring buffers of a bottleneck are its scratch, a few rows, left out as the paper does.
"""

from __future__ import annotations

from .. import ir


def op_working_set(op: ir.Op) -> int:
    return sum(t.nbytes for t in op.activation_inputs()) + op.output.nbytes


def paper_bound(bottlenecks: ir.Graph) -> tuple[int, ir.Op | None]:
    """The bound of a model, and the op that sets it, from its graph with pads folded and
    bottlenecks fused (`passes.Passed.bottlenecks`, which every compile computes)."""
    best, where = 0, None
    for op in bottlenecks.ops:
        if isinstance(op, ir.Reshape):
            continue
        size = op_working_set(op)
        if size > best:
            best, where = size, op
    return best, where
