"""Compose byte tables in a row into one.

An op whose every output byte is a function of one input byte (`ir.is_byte_table`) runs as
a 256-entry table. Two such ops in a row, the first read by the second alone, are one
table too (the second's indexed by the first's): a Keras `Rescaling` input layer's MUL and
ADD cost one pass over the frame instead of two, and the tensor between them never exists.
Exact by construction: each stage's table is still computed with its own op's arithmetic.
"""

from __future__ import annotations

from .. import ir


def chain_tables(graph: ir.Graph) -> ir.Graph:
    ops = list(graph.ops)
    merged = True
    while merged:
        merged = False
        for first in ops:
            second = _only_table_reader(graph, ops, first)
            if second is None:
                continue
            stages = _stages(first) + _stages(second)
            chain = ir.TableChain(input=stages[0].input, output=stages[-1].output, index=first.index, stages=stages)
            ops[ops.index(first)] = chain
            ops.remove(second)
            merged = True
            break
    return ir.Graph(ops=ops, input=graph.input, output=graph.output, source=graph.source,
                    source_sha256=graph.source_sha256)


def _stages(op: ir.Op) -> list[ir.Op]:
    return op.stages if isinstance(op, ir.TableChain) else [op]


def _is_table(op: ir.Op) -> bool:
    return isinstance(op, ir.TableChain) or ir.is_byte_table(op)


def _only_table_reader(graph: ir.Graph, ops: list[ir.Op], op: ir.Op) -> ir.Op | None:
    """The table op that alone reads `op`'s output, if `op` is a table and its output is
    not the graph's."""
    if not _is_table(op) or op.output is graph.output:
        return None
    readers = [other for other in ops if any(t is op.output for t in other.activation_inputs())]
    if len(readers) == 1 and _is_table(readers[0]):
        return readers[0]
    return None
