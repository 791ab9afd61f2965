"""Buffers and their lifetimes over the schedule.

A buffer is the storage of one or more tensors: RESHAPE/SQUEEZE outputs alias their input,
so both live in one buffer and the reshape emits no code. A tensor inside a row pipeline
gets a ring buffer of just the rows the pipeline needs at once (`rows.ring_rows`), live
only during that pipeline's step.

The schedule is the list of steps that emit code, in order; a buffer is live from the step
that writes it to the last step that reads it. The graph input is live from before the
first step (the caller writes it), the graph output until after the last (the caller
reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ir
from .rows import RowEvent, StreamedInput, ring_rows, row_bytes, schedule_events, tensor_rows
from .streaming import InputMode, SensorRows, check_streamable


@dataclass(eq=False)
class Buffer:
    tensors: list[ir.Tensor]
    nbytes: int
    first: int  # first step at which it is live
    last: int  # last step at which it is live
    name: str = ""
    rows: int = 1  # rows it holds: the tensor's height, or fewer for a ring

    @property
    def is_ring(self) -> bool:
        return self.rows < tensor_rows(self.tensors[0])

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Lifetimes:
    steps: list[ir.Op]
    buffers: list[Buffer]
    events: list[RowEvent]
    buffer_of: dict[int, Buffer] = field(default_factory=dict)  # id(tensor) -> buffer
    stream: StreamedInput | None = None  # the graph input's ring, with --input rows
    scratch: dict[int, ir.Tensor] = field(default_factory=dict)  # id(op) -> its kernel's arena scratch

    def of(self, tensor: ir.Tensor) -> Buffer:
        return self.buffer_of[id(tensor)]


def _streamed_input(graph: ir.Graph, steps: list[ir.Op], sensor: SensorRows | None) -> StreamedInput:
    """The ring the first pipeline pulls the input rows into (and the sensor rows' ring, with
    `sensor`): sized on the events with unsplit fill requests, then final (see
    rows.StreamedInput)."""
    check_streamable(graph)
    unsplit = StreamedInput(graph.input, sensor=sensor)
    streamed = (graph.input,) + ((sensor.tensor,) if sensor is not None else ())
    rings = ring_rows(steps[0], schedule_events(steps[:1], unsplit), streamed)
    return StreamedInput(graph.input, rings[id(graph.input)], sensor,
                         rings.get(id(sensor.tensor), 1) if sensor is not None else None)


def compute_lifetimes(graph: ir.Graph, input_mode: InputMode = InputMode.FRAME,
                      sensor: SensorRows | None = None, scratch_words=None) -> Lifetimes:
    """`sensor`: with --input rows, the sensor rows the input's rows are scaled from.
    `scratch_words(op)`: the int32 words of arena scratch the op's kernel needs (0: none),
    a buffer live during the op's step only."""
    steps = [op for op in graph.ops if not isinstance(op, ir.Reshape)]
    stream = _streamed_input(graph, steps, sensor) if input_mode is InputMode.ROWS else None
    scratch = {id(op): ir.Tensor(f"{op.output.name} (scratch)", (words,), ir.DType.INT32)
               for op in steps if not isinstance(op, ir.RowPipeline)
               for words in [scratch_words(op) if scratch_words else 0] if words}
    events = schedule_events(steps, stream, scratch)
    buffer_of: dict[int, Buffer] = {}
    buffers: list[Buffer] = []

    def new_buffer(tensor: ir.Tensor, step: int, rows: int | None = None) -> None:
        rows = tensor_rows(tensor) if rows is None else rows
        buffer = Buffer([tensor], rows * row_bytes(tensor), step, step, name=tensor.name, rows=rows)
        buffers.append(buffer)
        buffer_of[id(tensor)] = buffer

    # A frame is written by the caller before the first step; a streamed input's ring
    # lives during the first step only.
    if stream is None:
        new_buffer(graph.input, -1)
    else:
        new_buffer(graph.input, 0, rows=stream.slots)
        if stream.sensor is not None:
            new_buffer(stream.sensor.tensor, 0, rows=stream.sensor_slots)
    step = 0
    for op in graph.ops:
        if isinstance(op, ir.Reshape):  # alias: same bytes, new shape
            buffer = buffer_of[id(op.input)]
            buffer.tensors.append(op.output)
            buffer_of[id(op.output)] = buffer
            continue
        for t in op.activation_inputs():
            buffer_of[id(t)].last = max(buffer_of[id(t)].last, step)
        if isinstance(op, ir.RowPipeline):
            rings = ring_rows(op, [e for e in events if e.step == step])
            for t in op.internal_tensors():
                new_buffer(t, step, rows=rings.get(id(t), 1))
        if id(op) in scratch:
            new_buffer(scratch[id(op)], step)
        new_buffer(op.output, step)
        step += 1
    buffer_of[id(graph.output)].last = len(steps)
    return Lifetimes(steps=steps, buffers=buffers, events=events, buffer_of=buffer_of, stream=stream,
                     scratch=scratch)
