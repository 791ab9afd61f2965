"""Prove an arena plan safe by replaying every read and write of the schedule, byte by byte.

For each row event (see `rows.py`), in order: every byte it reads must still hold the data
of the tensor it expects, and every byte it writes must hold nothing that a later event (or
this one) still has to read. Ring-buffered rows land in slot `row % rows`. The graph input
is written before the first event (a streamed input instead by its fill events, into its
ring like any other) and the graph output is read after the last. Any
violation raises `PlanError` naming the step, the tensors and the bytes.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .rows import RowEvent, row_bytes


class PlanError(Exception):
    """The arena plan is unsafe (a bug in the planner, never the user's fault)."""


class _Replay:
    """Tracks, for every arena byte, which row of which buffer it holds and until which
    event that row is still needed. Rows are counted in the buffer's own rows (those of the
    tensor that produces it), so a reshaped alias reading the same bytes is checked too."""

    def __init__(self, plan, events: list[RowEvent]):
        self.plan = plan
        self.events = events
        self.ids: dict[tuple[int, int], int] = {}
        self.owner = np.full(plan.arena_bytes, -1, dtype=np.int64)
        self.needed_until = np.full(plan.arena_bytes, -2, dtype=np.int64)  # -1 is the caller's write
        self.last_read = self._last_reads()

    def _rows_of(self, t: ir.Tensor, first: int, last: int):
        """The buffer rows that rows first..last of `t` cover, with their arena byte ranges."""
        buffer = self.plan.lifetimes.of(t)
        unit = row_bytes(buffer.tensors[0])
        lo, hi = first * row_bytes(t) // unit, ((last + 1) * row_bytes(t) - 1) // unit
        for row in range(lo, hi + 1):
            start = self.plan.offsets[id(buffer)] + (row % buffer.rows) * unit
            yield buffer, row, start, start + unit

    def _id(self, buffer, row: int) -> int:
        return self.ids.setdefault((id(buffer), row), len(self.ids))

    def _last_reads(self) -> dict[int, int]:
        last: dict[int, int] = {}
        for e, event in enumerate(self.events):
            for t, first, final in event.reads:
                for buffer, row, _, _ in self._rows_of(t, first, final):
                    last[self._id(buffer, row)] = e
        output = self.plan.graph_output
        for buffer, row, _, _ in self._rows_of(output, 0, _rows(output) - 1):
            last[self._id(buffer, row)] = len(self.events)  # the caller reads it
        return last

    def write(self, e: int, t: ir.Tensor, first: int, last: int, step: str, reading: ir.Tensor | None = None) -> None:
        """Write rows first..last of `t` at event `e`; `reading`: the input of an in-place
        event (`RowEvent.in_place`), whose bytes it has already read may be overwritten."""
        for buffer, row, start, end in self._rows_of(t, first, last):
            busy = self.needed_until[start:end] >= e
            if reading is not None:
                busy &= ~self._consumed(e, reading, t, start, end)
            if busy.any():
                raise PlanError(f"{step}: writing row {row} of {buffer.name!r} at arena bytes "
                                f"{start}..{end} destroys {self._owner_name(start + int(np.argmax(busy)))} "
                                "before its last read")
            ident = self._id(buffer, row)
            self.owner[start:end] = ident
            self.needed_until[start:end] = self.last_read.get(ident, -2)

    def _consumed(self, e: int, source: ir.Tensor, target: ir.Tensor, start: int, end: int) -> np.ndarray:
        """Which of arena bytes start..end an in-place event `e` (reading `source` element by
        element, writing `target`'s element of the same index after each read) is done with
        when it writes them: bytes of `source` (every one holds it, `read` checked that) that
        no later event reads, lying in an input element whose index is at most that of the
        output element written there."""
        source_base, target_base = self.plan.offset(source), self.plan.offset(target)
        byte = np.arange(start, end, dtype=np.int64)
        inside = (byte >= source_base) & (byte < source_base + source.nbytes)
        in_order = (byte - source_base) // source.itemsize <= (byte - target_base) // target.itemsize
        return inside & in_order & (self.needed_until[start:end] == e)

    def read(self, t: ir.Tensor, first: int, last: int, step: str) -> None:
        for buffer, row, start, end in self._rows_of(t, first, last):
            if (self.owner[start:end] != self._id(buffer, row)).any():
                raise PlanError(f"{step}: row {row} of {buffer.name!r} at arena bytes {start}..{end} "
                                "was overwritten before this read")

    def _owner_name(self, byte: int) -> str:
        """Which row of which buffer a byte holds, for the error message."""
        names = {id(b): b.name for b in self.plan.lifetimes.buffers}
        ident = int(self.owner[byte])
        for (buffer_id, row), i in self.ids.items():
            if i == ident:
                return f"row {row} of {names.get(buffer_id, '?')!r}"
        return "live data"

    def run(self) -> None:
        graph_input, graph_output = self.plan.graph_input, self.plan.graph_output
        if self.plan.lifetimes.stream is None:
            self.write(-1, graph_input, 0, _rows(graph_input) - 1, "the caller")
        for e, event in enumerate(self.events):
            step = f"step {event.step} ({self.plan.steps[event.step].describe()})"
            for t, first, final in event.reads:
                self.read(t, first, final, step)
            t, first, final = event.writes
            self.write(e, t, first, final, step, reading=event.reads[0][0] if event.in_place else None)
        self.read(graph_output, 0, _rows(graph_output) - 1, "the caller")


def _rows(t: ir.Tensor) -> int:
    return t.nbytes // row_bytes(t)


def check_plan(plan) -> None:
    """Raise PlanError unless every buffer fits the arena, is aligned, and the replay of the
    whole schedule never overwrites a byte before its last read."""
    from .arena import ALIGNMENT

    for buffer in plan.lifetimes.buffers:
        start = plan.offsets[id(buffer)]
        if start < 0 or start + buffer.nbytes > plan.arena_bytes or start % ALIGNMENT:
            raise PlanError(f"buffer {buffer.name!r} at {start}+{buffer.nbytes} is outside the "
                            f"{plan.arena_bytes}-byte arena or misaligned")
    _Replay(plan, plan.events).run()
