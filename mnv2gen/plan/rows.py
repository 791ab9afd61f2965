"""Row-level simulation of the schedule, mirroring the C pipeline engine step for step.

A fused pipeline (`ir.RowPipeline`) produces its output one row at a time; to produce a row,
a stage first makes sure every input row in its window exists, producing those rows on
demand from the stage that makes them. The C engine (`pipeline_run` in the kernels) does
exactly this, in exactly this order, so the event list below is the order in which the
generated code reads and writes every row. From it the planner sizes the ring buffers of
the tensors inside a pipeline and the checker proves that no byte is overwritten before
its last read.

Ops outside pipelines are one event each: they read all of their inputs and write all of
their output. A streamed graph input (`--input rows`, see streaming.py) is written by fill
events: the rows the caller's function produces at one request, reading nothing; with
`--input-scale-from` the fill events write sensor rows instead, and each input row is an event
of its own that reads its window of them (streaming.SensorRows).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from .streaming import SensorRows, fill_runs


@dataclass(frozen=True)
class RowEvent:
    """One kernel call: it reads `reads` rows and writes one row (or a whole tensor)."""

    step: int  # index of the schedule step (pipeline or op) this event belongs to
    writes: tuple[ir.Tensor, int, int]  # (tensor, first row, last row)
    reads: tuple[tuple[ir.Tensor, int, int], ...]  # (tensor, first row, last row)
    # The kernel reads element j of its one input before it writes element j of its output,
    # front to back (`writes_in_place`): the write may cover input bytes already read.
    in_place: bool = False


def writes_in_place(op: ir.Op) -> bool:
    """Whether `op`'s kernel walks its one input and its output together, element by element
    from the first, reading each input element before writing the output element of the same
    index, with output elements no wider than input ones. Its output may then start where its
    input starts: each byte it writes belongs to an input element it has already read (the
    table lookups; QUANTIZE float32 -> int8, not the ONNX one, which transposes)."""
    if isinstance(op, ir.Quantize):
        return not op.from_nchw and op.output.itemsize <= op.input.itemsize
    return isinstance(op, (ir.Logistic, ir.ElementwiseConstant, ir.TableChain))


@dataclass(frozen=True)
class StreamedInput:
    """The graph input when the caller's function fills it row by row into a ring of
    `slots` rows. While the ring is being sized `slots` is None: requests are then not split
    where the ring wraps (splitting changes which events write a row, not which rows are
    live, so the ring comes out the same)."""

    tensor: ir.Tensor
    slots: int | None = None
    sensor: SensorRows | None = None  # --input-scale-from: the input's rows come from these
    sensor_slots: int | None = None  # the sensor ring's rows (None while it is being sized)


def tensor_rows(t: ir.Tensor) -> int:
    """Rows of a tensor as the pipeline engine sees it: H for NHWC, C x H for NCHW (each
    plane's rows, in memory order), else one row."""
    if len(t.shape) != 4:
        return 1
    return t.shape[1] * t.shape[2] if t.layout is ir.Layout.NCHW else t.shape[1]


def row_bytes(t: ir.Tensor) -> int:
    return t.nbytes // tensor_rows(t)


def input_window(stage: ir.Op, tensor: ir.Tensor, y: int) -> tuple[int, int]:
    """Rows of `tensor` that `stage` reads to produce its output row `y` (clipped)."""
    if isinstance(stage, (ir.Conv2D, ir.DepthwiseConv2D)):
        first = y * stage.stride[0] - stage.padding.top
        last = first + stage.kernel[0] - 1
        return max(first, 0), min(last, tensor_rows(tensor) - 1)
    if isinstance(stage, ir.Add) or (isinstance(stage, ir.Quantize) and not stage.from_nchw):
        return y, y
    raise TypeError(f"{stage.op_name} cannot run inside a row pipeline")


def input_rows(stage: ir.Op, tensor: ir.Tensor, y: int) -> list[tuple[int, int]]:
    """The row ranges of `tensor` that `stage` reads to produce its output row `y`: one
    window, except that a QUANTIZE from NCHW reads row y of every channel's plane."""
    if isinstance(stage, ir.Quantize) and stage.from_nchw:
        _, planes, height, _ = tensor.shape
        return [(c * height + y, c * height + y) for c in range(planes)]
    return [input_window(stage, tensor, y)]


def pipeline_events(pipeline: ir.RowPipeline, step: int, stream: StreamedInput | None = None) -> list[RowEvent]:
    """The events of one pipeline, in the exact order the C engine performs them."""
    producer = {id(stage.output): stage for stage in pipeline.stages}
    streamed = stream.tensor if stream is not None and stream.tensor in pipeline.activation_inputs() else None
    sensor_ids = {id(stream.sensor.tensor)} if streamed is not None and stream.sensor is not None else set()
    produced: dict[int, int] = {}
    events: list[RowEvent] = []

    def rows_done(t: ir.Tensor) -> int:
        return produced.get(id(t), 0 if id(t) in producer or t is streamed or id(t) in sensor_ids else tensor_rows(t))

    def fill(t: ir.Tensor, last: int) -> None:
        """The engine's requests to the caller's fill function for rows up to `last`."""
        if stream.sensor is not None:
            for y in range(rows_done(t), last + 1):
                scaled_row(t, y, stream.sensor)
            return
        request_rows(t, last, stream.slots)

    def request_rows(t: ir.Tensor, last: int, slots: int | None) -> None:
        """The fill calls delivering rows of `t` (the input or the sensor's) up to `last`,
        each run at most the ring's `slots` rows (None: the whole tensor)."""
        for first, count in fill_runs(rows_done(t), last, slots or tensor_rows(t)):
            events.append(RowEvent(step, (t, first, first + count - 1), ()))
            produced[id(t)] = first + count

    def scaled_row(t: ir.Tensor, y: int, sensor: SensorRows) -> None:
        """Input row y, computed from its sensor rows (filled first); after the last, the
        sensor rows none read, so the caller sees each once."""
        first, last = sensor.windows[y]
        request_rows(sensor.tensor, last, stream.sensor_slots)
        events.append(RowEvent(step, (t, y, y), ((sensor.tensor, first, last),)))
        produced[id(t)] = y + 1
        if y == tensor_rows(t) - 1:
            request_rows(sensor.tensor, tensor_rows(sensor.tensor) - 1, stream.sensor_slots)

    def produce_next_row(stage: ir.Op) -> None:
        y = rows_done(stage.output)
        reads = []
        for t in stage.activation_inputs():
            windows = input_rows(stage, t, y)
            last = max(last for _, last in windows)
            if t is streamed:
                fill(t, last)
            while rows_done(t) <= last:
                produce_next_row(producer[id(t)])
            reads += [(t, first, last) for first, last in windows]
        events.append(RowEvent(step, (stage.output, y, y), tuple(reads)))
        produced[id(stage.output)] = y + 1

    final = pipeline.stages[-1]
    while rows_done(final.output) < tensor_rows(final.output):
        produce_next_row(final)
    if streamed is not None:  # the rows no window read, so the caller sees each row once
        fill(streamed, tensor_rows(streamed) - 1)
    return events


def schedule_events(steps: list[ir.Op], stream: StreamedInput | None = None,
                    scratch: dict[int, ir.Tensor] | None = None) -> list[RowEvent]:
    """`scratch`: id(op) -> the arena scratch its kernel fills from its inputs, then reads
    beside them (a FULLY_CONNECTED's staged input): an event of its own before the op's."""
    events: list[RowEvent] = []
    for number, op in enumerate(steps):
        if isinstance(op, ir.RowPipeline):
            events += pipeline_events(op, number, stream)
        else:
            reads = tuple((t, 0, tensor_rows(t) - 1) for t in op.activation_inputs())
            staged = (scratch or {}).get(id(op))
            if staged is not None:
                events.append(RowEvent(number, (staged, 0, 0), reads))
                reads += ((staged, 0, 0),)
            events.append(RowEvent(number, (op.output, 0, tensor_rows(op.output) - 1), reads,
                                   in_place=writes_in_place(op)))
    return events


def ring_rows(pipeline: ir.RowPipeline, events: list[RowEvent], streamed: tuple[ir.Tensor, ...] = ()) -> dict[int, int]:
    """For every tensor inside the pipeline (and the `streamed` ones: its input, the sensor
    rows): the fewest rows a ring must hold so that writing row r into slot r % rows never
    destroys a row that is still to be read."""
    internal = {id(t) for t in pipeline.internal_tensors()} | {id(t) for t in streamed}
    written_at: dict[tuple[int, int], int] = {}
    last_read: dict[tuple[int, int], int] = {}
    for e, event in enumerate(events):
        t, first, final = event.writes
        if id(t) in internal:
            for r in range(first, final + 1):
                written_at[(id(t), r)] = e
        for rt, lo, hi in event.reads:
            if id(rt) in internal:
                for r in range(lo, hi + 1):
                    last_read[(id(rt), r)] = e
    rings: dict[int, int] = {}
    for (tid, r), e_write in written_at.items():
        # The oldest row of this tensor still waiting for a read when row r is written.
        oldest = min((r2 for (tid2, r2), e_read in last_read.items()
                      if tid2 == tid and r2 < r and e_read > e_write), default=r)
        rings[tid] = max(rings.get(tid, 1), r - oldest + 1)
    return rings
