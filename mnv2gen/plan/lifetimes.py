"""Buffers and their lifetimes over the schedule.

A buffer is the storage of one or more tensors: RESHAPE/SQUEEZE outputs alias their input,
so both live in one buffer and the reshape emits no code. The schedule is the list of ops
that do emit code, in order; a buffer is live from the step that writes it to the last step
that reads it. The graph input is live from before the first step (the caller writes it),
the graph output until after the last (the caller reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ir


@dataclass(eq=False)
class Buffer:
    tensors: list[ir.Tensor]
    nbytes: int
    first: int  # first step at which it is live
    last: int  # last step at which it is live
    name: str = ""

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Lifetimes:
    steps: list[ir.Op]
    buffers: list[Buffer]
    buffer_of: dict[int, Buffer] = field(default_factory=dict)  # id(tensor) -> buffer

    def of(self, tensor: ir.Tensor) -> Buffer:
        return self.buffer_of[id(tensor)]


def compute_lifetimes(graph: ir.Graph) -> Lifetimes:
    steps = [op for op in graph.ops if not isinstance(op, ir.Reshape)]
    buffer_of: dict[int, Buffer] = {}
    buffers: list[Buffer] = []

    def new_buffer(tensor: ir.Tensor, step: int) -> None:
        buffer = Buffer([tensor], tensor.nbytes, step, step, name=tensor.name)
        buffers.append(buffer)
        buffer_of[id(tensor)] = buffer

    new_buffer(graph.input, -1)
    step = 0
    for op in graph.ops:
        if isinstance(op, ir.Reshape):  # alias: same bytes, new shape
            buffer = buffer_of[id(op.input)]
            buffer.tensors.append(op.output)
            buffer_of[id(op.output)] = buffer
            continue
        for t in op.activation_inputs():
            buffer_of[id(t)].last = max(buffer_of[id(t)].last, step)
        new_buffer(op.output, step)
        step += 1
    buffer_of[id(graph.output)].last = len(steps)
    return Lifetimes(steps=steps, buffers=buffers, buffer_of=buffer_of)
