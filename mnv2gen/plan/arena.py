"""Place every buffer at a fixed offset in one static arena, and prove the placement safe.

Placement is greedy, largest buffer first, each at the offset that ends lowest without
sharing bytes with any buffer live at the same time. One exception makes the arena smaller
than the sum of an op's input and output: a pipeline may write its output over the part of
its input it has finished reading. For every pipeline whose input dies there, the planner
computes from the row schedule the smallest displacement at which the output can start
relative to the input (`overlap_displacement`), and offers that position first. With a streamed input (`--input rows`, where the rings
are most of the arena) the rings of one pipeline that never hold a live row at the same
time (`time_shared_rings`: e.g. two one-row rings, each written and read back before the
other is written) may also share their bytes. Whatever the placer decides, `check.check_plan` then replays every read and write of the schedule
and rejects the plan if any byte would be overwritten before its last read.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .. import ir
from .check import PlanError, check_plan
from .lifetimes import Buffer, Lifetimes, compute_lifetimes
from .rows import RowEvent, StreamedInput, row_bytes, writes_in_place
from .streaming import InputMode, SensorRows

# Offsets are multiples of 8 so float32 inputs/outputs and word-wise kernels load aligned data.
ALIGNMENT = 8

__all__ = ["ALIGNMENT", "ArenaPlan", "PlanError", "plan_arena", "check_plan"]


@dataclass
class ArenaPlan:
    lifetimes: Lifetimes
    offsets: dict[int, int]  # id(buffer) -> byte offset
    arena_bytes: int
    graph_input: ir.Tensor
    graph_output: ir.Tensor

    def offset(self, tensor: ir.Tensor) -> int:
        return self.offsets[id(self.lifetimes.of(tensor))]

    @property
    def steps(self) -> list[ir.Op]:
        return self.lifetimes.steps

    @property
    def events(self) -> list[RowEvent]:
        return self.lifetimes.events

    @property
    def stream(self) -> StreamedInput | None:
        """The input's ring and its rows (--input rows), or None: the input is a frame."""
        return self.lifetimes.stream

    def scratch(self, op: ir.Op) -> ir.Tensor | None:
        """The arena scratch of `op`'s kernel (placed and proved like any buffer), or None."""
        return self.lifetimes.scratch.get(id(op))

    def live_bytes(self, step: int) -> int:
        """Bytes of all buffers live during `step` (the working set, before any overlap)."""
        return sum(b.nbytes for b in self.lifetimes.buffers if b.first <= step <= b.last)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def overlap_displacement(events: list[RowEvent], source: ir.Tensor, target: ir.Tensor) -> int | None:
    """The smallest aligned d >= 0 such that `target` may start d bytes after `source`
    although both are live in the same step: every row of `target` is written either below
    all of `source` that is still to be read, or past the end of `source`. None if no d
    shorter than `source` works (then overlapping saves nothing)."""
    last_read: dict[int, int] = {}
    writes: list[tuple[int, int]] = []  # (event, row of target)
    for e, event in enumerate(events):
        for t, first, final in event.reads:
            if t is source:
                for r in range(first, final + 1):
                    last_read[r] = e
        t, first, final = event.writes
        if t is target:
            writes += [(e, r) for r in range(first, final + 1)]
    source_rows, source_row, target_row = source.nbytes // row_bytes(source), row_bytes(source), row_bytes(target)
    # For each write: the lowest row of `source` still to be read at (or after) that event.
    limits = []
    for e, r in writes:
        pending = [j for j in range(source_rows) if last_read.get(j, -1) >= e]
        limits.append((r, min(pending, default=source_rows) * source_row))
    d = 0
    while d < source.nbytes:
        blocking = [r for r, limit in limits if not (d + (r + 1) * target_row <= limit or d + r * target_row >= source.nbytes)]
        if not blocking:
            return d
        d = _align(source.nbytes - blocking[0] * target_row)
    return None


def _overlap_offers(lifetimes: Lifetimes) -> dict[int, list[tuple[Buffer, int]]]:
    """For each buffer: (partner, displacement) pairs where it may overlap a partner placed
    `displacement` bytes before it (negative: after it)."""
    offers: dict[int, list[tuple[Buffer, int]]] = {}
    for step, op in enumerate(lifetimes.steps):
        if writes_in_place(op):
            _offer_in_place(lifetimes, op, step, offers)
        if not isinstance(op, ir.RowPipeline):
            continue
        events = [e for e in lifetimes.events if e.step == step]
        target = lifetimes.of(op.output)
        for t in op.activation_inputs():
            source = lifetimes.of(t)
            if source.last != step or source.is_ring or target.is_ring:
                continue
            d = overlap_displacement(events, t, op.output)
            if d is not None:
                offers.setdefault(id(target), []).append((source, d))
                offers.setdefault(id(source), []).append((target, -d))
    return offers


def _offer_in_place(lifetimes: Lifetimes, op: ir.Op, step: int, offers: dict) -> None:
    """An elementwise op that writes in place (`rows.writes_in_place`) may put its output
    where its input starts, when the input dies at this step."""
    source, target = lifetimes.of(op.input), lifetimes.of(op.output)
    if source.last == step and source is not target and not (source.is_ring or target.is_ring):
        offers.setdefault(id(target), []).append((source, 0))
        offers.setdefault(id(source), []).append((target, 0))


def _busy_events(events: list[RowEvent], t: ir.Tensor) -> set[int]:
    """The events (indices into `events`) at which `t` holds a row still to be read: from
    each row's write to its last read, both included (a kernel never reads and writes the
    same bytes)."""
    written: dict[int, int] = {}
    last_read: dict[int, int] = {}
    for e, event in enumerate(events):
        for rt, first, final in event.reads:
            if rt is t:
                last_read.update((r, e) for r in range(first, final + 1))
        wt, first, final = event.writes
        if wt is t:
            written.update((r, e) for r in range(first, final + 1))
    return {e for r, w in written.items() for e in range(w, last_read.get(r, w) + 1)}


def time_shared_rings(lifetimes: Lifetimes) -> set[tuple[int, int]]:
    """Pairs (id(buffer), id(other)) of the rings inside one pipeline that are never busy at
    the same event, so they may overlap at any displacement."""
    pairs: set[tuple[int, int]] = set()
    for step, op in enumerate(lifetimes.steps):
        if not isinstance(op, ir.RowPipeline):
            continue
        events = [e for e in lifetimes.events if e.step == step]
        busy = {id(t): _busy_events(events, t) for t in op.internal_tensors()}
        for a, b in combinations(op.internal_tensors(), 2):
            if busy[id(a)].isdisjoint(busy[id(b)]):
                first, second = lifetimes.of(a), lifetimes.of(b)
                pairs |= {(id(first), id(second)), (id(second), id(first))}
    return pairs


def plan_arena(graph: ir.Graph, check: bool = True, input_mode: InputMode = InputMode.FRAME,
               sensor: SensorRows | None = None, scratch_words=None) -> ArenaPlan:
    """Place every buffer; with `check`, prove the placement by replaying the schedule.
    `sensor` (--input rows --input-scale-from): the sensor rows' ring, placed and proved too.
    `scratch_words(op)`: words of arena scratch an op's kernel needs (see compute_lifetimes)."""
    lifetimes = compute_lifetimes(graph, input_mode, sensor, scratch_words)
    offers = _overlap_offers(lifetimes)
    # Only the streamed schedule time-shares rings: the frame schedule keeps the plan (and
    # the generated C) it has always had.
    shared = time_shared_rings(lifetimes) if input_mode is InputMode.ROWS else set()
    allowed = {(b_id, id(partner), d) for b_id, pairs in offers.items() for partner, d in pairs}
    offsets: dict[int, int] = {}
    placed: list[Buffer] = []
    for buffer in sorted(lifetimes.buffers, key=lambda b: (-b.nbytes, b.first)):
        rivals = [o for o in placed if o.overlaps_in_time(buffer)]

        def fits(offset: int) -> bool:
            return offset >= 0 and all(
                offset + buffer.nbytes <= offsets[id(o)] or offsets[id(o)] + o.nbytes <= offset
                or (id(buffer), id(o), offset - offsets[id(o)]) in allowed or (id(buffer), id(o)) in shared
                for o in rivals)

        candidates = [offsets[id(p)] + d for p, d in offers.get(id(buffer), []) if id(p) in offsets]
        candidates += [offsets[id(o)] for o in rivals if (id(buffer), id(o)) in shared]
        candidates += [0] + [_align(offsets[id(o)] + o.nbytes) for o in rivals]
        offsets[id(buffer)] = min((c for c in candidates if fits(c)), key=lambda c: (c + buffer.nbytes, c))
        placed.append(buffer)
    arena_bytes = _align(max((offsets[id(b)] + b.nbytes for b in lifetimes.buffers), default=0))
    plan = ArenaPlan(lifetimes=lifetimes, offsets=offsets, arena_bytes=arena_bytes,
                     graph_input=graph.input, graph_output=graph.output)
    if check:
        check_plan(plan)
    return plan


def arena_bytes_of(graph: ir.Graph, input_mode: InputMode = InputMode.FRAME, sensor: SensorRows | None = None) -> int:
    """The planned arena of a graph, for passes that weigh alternatives (unchecked: only the
    plan finally compiled needs the proof, and it gets it)."""
    return plan_arena(graph, check=False, input_mode=input_mode, sensor=sensor).arena_bytes
