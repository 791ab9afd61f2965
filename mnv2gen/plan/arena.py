"""Place every buffer at a fixed offset in one static arena, and prove the placement safe."""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from .lifetimes import Buffer, Lifetimes, compute_lifetimes

# Offsets are multiples of 8 so float32 inputs/outputs and any future word-wise kernel load
# aligned data.
ALIGNMENT = 8


class PlanError(Exception):
    """The arena plan is unsafe (a bug in the planner, never the user's fault)."""


@dataclass
class ArenaPlan:
    lifetimes: Lifetimes
    offsets: dict[int, int]  # id(buffer) -> byte offset
    arena_bytes: int

    def offset(self, tensor: ir.Tensor) -> int:
        return self.offsets[id(self.lifetimes.of(tensor))]

    @property
    def steps(self) -> list[ir.Op]:
        return self.lifetimes.steps

    def live_bytes(self, step: int) -> int:
        """Bytes of all buffers live during `step` (the working set)."""
        return sum(b.nbytes for b in self.lifetimes.buffers if b.first <= step <= b.last)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def plan_arena(graph: ir.Graph) -> ArenaPlan:
    """Greedy placement: largest buffers first, each at the lowest offset that does not collide
    with a placed buffer whose lifetime intersects its own."""
    lifetimes = compute_lifetimes(graph)
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[int, int] = {}
    for buffer in sorted(lifetimes.buffers, key=lambda b: (-b.nbytes, b.first)):
        offset = 0
        for other, other_offset in sorted(
            ((o, off) for o, off in placed if o.overlaps_in_time(buffer)), key=lambda item: item[1]
        ):
            if offset + buffer.nbytes <= other_offset:
                break  # fits in the gap below this one
            offset = max(offset, _align(other_offset + other.nbytes))
        offsets[id(buffer)] = offset
        placed.append((buffer, offset))
    arena_bytes = _align(max((offsets[id(b)] + b.nbytes for b in lifetimes.buffers), default=0))
    plan = ArenaPlan(lifetimes=lifetimes, offsets=offsets, arena_bytes=arena_bytes)
    check_plan(plan)
    return plan


def check_plan(plan: ArenaPlan) -> None:
    """Replay the schedule: at every step, no two live buffers may share a byte, and every
    buffer must lie inside the arena. Raises PlanError if the plan is unsafe."""
    buffers = plan.lifetimes.buffers
    for b in buffers:
        start = plan.offsets[id(b)]
        if start < 0 or start + b.nbytes > plan.arena_bytes or start % ALIGNMENT:
            raise PlanError(f"buffer {b.name!r} at {start}+{b.nbytes} is outside the "
                            f"{plan.arena_bytes}-byte arena or misaligned")
    for step in range(-1, len(plan.steps) + 1):
        live = sorted(((plan.offsets[id(b)], b) for b in buffers if b.first <= step <= b.last),
                      key=lambda item: item[0])
        for (start_a, a), (start_b, b) in zip(live, live[1:]):
            if start_a + a.nbytes > start_b:
                raise PlanError(f"step {step}: {a.name!r} and {b.name!r} overlap in the arena")
