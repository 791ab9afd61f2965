"""Group convolutions and ADDs into row pipelines.

Every convolution, depthwise convolution and ADD first becomes a pipeline of its own (run
row by row, input and output whole). Then:

* `fuse_bottlenecks` merges each inverted residual -- 1x1 expansion, depthwise, linear 1x1
  projection, optional residual ADD of the block's input -- into one pipeline, so the
  expanded tensor only ever exists as a ring of a few rows. The first block, without
  expansion, is depthwise + projection. Models that don't match still run, layer by layer.
* `fuse_neighbours` then merges a pipeline into the one that consumes its output when the
  arena planner says that saves memory (the stem convolution and the first bottleneck, so
  the 48x48x16 tensor is never whole either).

Merging two pipelines never changes arithmetic: the stages keep their ops; only the order
of row computations and where rows are stored change.
"""

from __future__ import annotations

from typing import Callable

from .. import ir


def wrap_layers(graph: ir.Graph) -> ir.Graph:
    ops = [ir.RowPipeline(input=op.activation_inputs()[0], output=op.output, index=op.index,
                          arithmetic=op.arithmetic, stages=[op])
           if _streams(op) else op for op in graph.ops]
    return _rebuilt(graph, ops)


def _streams(op: ir.Op) -> bool:
    """Whether the row pipelines can run `op` (in either arithmetic: the row kernels end in
    the output stage of the model's, codegen/kernels.OutputStage)."""
    if isinstance(op, ir.Quantize):  # TFLite's QUANTIZE has no row kernel (yet), but its
        if op.arithmetic is ir.Arithmetic.TFLITE:  # TRANSPOSE of the NCHW input (a copy) has
            return op.from_nchw and op.input.quant == op.output.quant and _is_batch_1(op)
        from_input = op.from_nchw or op.input.dtype is ir.DType.UINT8  # see passes/quantized_input.py
        return from_input and _is_batch_1(op)
    return isinstance(op, ir.STREAMABLE_OPS) and _is_batch_1(op)


def _is_batch_1(op: ir.Op) -> bool:
    """4-D batch-1 tensors: NHWC ones, and the NCHW input a QUANTIZE transposes."""
    return all(len(t.shape) == 4 and t.shape[0] == 1 for t in op.activation_inputs() + [op.output])


def _rebuilt(graph: ir.Graph, ops: list[ir.Op]) -> ir.Graph:
    # Not verified here: a pass merges many times (and weighs candidates it drops), and
    # run_passes verifies the graph each pass leaves behind.
    return ir.Graph(ops=ops, input=graph.input, output=graph.output, source=graph.source,
                    source_sha256=graph.source_sha256)


def _consumers(ops: list[ir.Op], tensor: ir.Tensor) -> list[ir.Op]:
    return [op for op in ops if any(t is tensor for t in op.activation_inputs())]


def can_merge(graph: ir.Graph, first: ir.RowPipeline, second: ir.RowPipeline) -> bool:
    """`first` can run inside `second` if `second` is the only reader of its output."""
    return (first.output is not graph.output and _consumers(graph.ops, first.output) == [second])


def merge(graph: ir.Graph, first: ir.RowPipeline, second: ir.RowPipeline, label: str) -> ir.Graph:
    merged = ir.RowPipeline(input=first.input, output=second.output, index=first.index,
                            arithmetic=first.arithmetic, stages=first.stages + second.stages, label=label)
    ops = [op for op in graph.ops if op is not first]
    ops[ops.index(second)] = merged
    return _rebuilt(graph, ops)


def _single(op: ir.Op, kind) -> ir.Op | None:
    """The stage of a one-stage pipeline of the given op type, else None."""
    if isinstance(op, ir.RowPipeline) and len(op.stages) == 1 and isinstance(op.stages[0], kind):
        return op.stages[0]
    return None


def _is_pointwise(conv: ir.Op | None) -> bool:
    return isinstance(conv, ir.Conv2D) and conv.kernel == (1, 1) and conv.stride == (1, 1)


def fuse_bottlenecks(graph: ir.Graph) -> ir.Graph:
    """Merge every inverted residual block into one pipeline."""
    for depthwise_step in [op for op in graph.ops if _single(op, ir.DepthwiseConv2D)]:
        if depthwise_step not in graph.ops:
            continue
        graph = _fuse_block(graph, depthwise_step)
    return graph


def _fuse_block(graph: ir.Graph, depthwise_step: ir.RowPipeline) -> ir.Graph:
    producer = graph.producer(depthwise_step.input)
    consumers = _consumers(graph.ops, depthwise_step.output)
    projection = consumers[0] if len(consumers) == 1 else None
    if not _is_pointwise(_single(projection, ir.Conv2D)) or not can_merge(graph, depthwise_step, projection):
        return graph
    block_input = depthwise_step.input
    expansion = producer if _is_pointwise(_single(producer, ir.Conv2D)) else None
    if expansion is not None and can_merge(graph, expansion, depthwise_step):
        block_input = expansion.input
        graph = merge(graph, expansion, depthwise_step, "bottleneck")
        depthwise_step = graph.producer(depthwise_step.output)
    graph = merge(graph, depthwise_step, projection, "bottleneck")
    block = graph.producer(projection.output)
    residual = _consumers(graph.ops, block.output)
    add = _single(residual[0], ir.Add) if len(residual) == 1 else None
    if add is not None and block_input in add.activation_inputs() and can_merge(graph, block, residual[0]):
        graph = merge(graph, block, residual[0], "bottleneck")
    return graph


def _label(pipeline: ir.RowPipeline) -> str:
    return pipeline.label if len(pipeline.stages) > 1 else pipeline.stages[0].op_name.lower()


def fuse_neighbours(graph: ir.Graph, arena_of: Callable[[ir.Graph], float]) -> ir.Graph:
    """Greedily merge adjacent pipelines while the planned arena shrinks."""
    best = arena_of(graph)
    improved = True
    while improved:
        improved = False
        for second in [op for op in graph.ops if isinstance(op, ir.RowPipeline)]:
            first = graph.producer(second.input)
            if not isinstance(first, ir.RowPipeline) or not can_merge(graph, first, second):
                continue
            candidate = merge(graph, first, second, f"{_label(first)}+{_label(second)}")
            size = arena_of(candidate)
            if size < best:
                graph, best, improved = candidate, size, True
                break
    return graph
