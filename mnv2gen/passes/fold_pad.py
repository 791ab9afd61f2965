"""Fold an explicit PAD into the convolution that reads it.

A quantized PAD fills with the zero point, and a padded tap contributes
(zero_point - zero_point) * w = 0 to a convolution's sum; TFLite's kernels skip taps that
fall in implicit padding, which also contributes 0. So PAD followed by a convolution equals
the convolution with the padding added to its own: same sums, same bytes, and the padded
tensor is never stored.
"""

from __future__ import annotations

from dataclasses import replace

from .. import ir


def fold_pad(graph: ir.Graph) -> ir.Graph:
    ops = list(graph.ops)
    for pad in [op for op in ops if isinstance(op, ir.Pad)]:
        consumers = [op for op in ops if any(t is pad.output for t in op.activation_inputs())]
        if len(consumers) != 1 or pad.output is graph.output:
            continue
        conv = consumers[0]
        if not isinstance(conv, (ir.Conv2D, ir.DepthwiseConv2D)) or conv.input is not pad.output:
            continue
        p, q = pad.padding, conv.padding
        padding = ir.Padding(top=p.top + q.top, bottom=p.bottom + q.bottom,
                             left=p.left + q.left, right=p.right + q.right)
        ops[ops.index(conv)] = replace(conv, input=pad.input, padding=padding)
        ops.remove(pad)
    return ir.Graph(ops=ops, input=graph.input, output=graph.output, source=graph.source,
                    source_sha256=graph.source_sha256)
