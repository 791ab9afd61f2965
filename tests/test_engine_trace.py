"""The planner's model of the C pipeline engine (plan/rows.py) is the C engine, row for row.

The arena plan and its byte-replay proof rest on `schedule_events`, a Python mirror of
`pipeline_run` (templates/ref/pipeline.c.j2). Here the generated C is built with its row
trace (-D<P>_TRACE_ROWS), run on one input, and every row it reads and writes, in order,
must be the rows the plan's events say, layer by layer.

The rings the engine writes are also inside the arena by construction: model.c's
compile-time assertion covers them (checked last).
"""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

import model_zoo
from mnv2gen import ir
from mnv2gen.codegen.lower import pipeline_buffers
from mnv2gen.codegen.render import Options, render
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.host_sim.build import build_host, row_trace_flags
from mnv2gen.host_sim.runner import trace_rows_host
from mnv2gen.plan import rows
from mnv2gen.targets import C_WARNINGS
from mnv2gen.verification.compare import make_inputs
from mnv2gen.verification.harness import find_compiler

FLAGSHIP = "mnv2_a035_96_c1000"
PREFIX = "mnv2"


def planned_trace(steps: list[ir.Op], events: list[rows.RowEvent] | None = None) -> list[tuple[object, ...]]:
    """The trace the C must write if it runs the plan's events (by default, those of a frame
    input): for each event of a pipeline the rows it reads, one by one, then the rows it
    writes; each step closed by its layer."""
    trace: list[tuple[object, ...]] = []
    events = rows.schedule_events(steps) if events is None else events
    for number, op in enumerate(steps):
        if isinstance(op, ir.RowPipeline):
            trace += _pipeline_trace(op, [e for e in events if e.step == number])
        trace.append(("layer", number))
    return trace


def _pipeline_trace(op: ir.RowPipeline, events: list[rows.RowEvent]) -> list[tuple[object, ...]]:
    buffer = {id(t): i for i, t in enumerate(pipeline_buffers(op))}
    stage = {id(s.output): k for k, s in enumerate(op.stages)}
    trace: list[tuple[object, ...]] = []
    for event in events:
        for t, first, last in event.reads:
            trace += [("read", buffer[id(t)], row) for row in range(first, last + 1)]
        t, first, last = event.writes  # several rows: the caller's fill (stage -1)
        trace += [("write", stage.get(id(t), -1), buffer[id(t)], row) for row in range(first, last + 1)]
    return trace


def first_difference(ours: list, planned: list) -> str:
    """Where two traces part, with a few events of context, for a readable failure."""
    at = next((i for i, (a, b) in enumerate(zip(ours, planned)) if a != b), min(len(ours), len(planned)))
    return (f"traces differ at event {at} (C wrote {len(ours)}, the plan has {len(planned)}):\n"
            f"  C:    {ours[max(at - 3, 0):at + 3]}\n  plan: {planned[max(at - 3, 0):at + 3]}")


def engine_trace(name: str, tmp_path) -> tuple[list, list[ir.Op]]:
    """Build `name`'s generated C with the row trace (-O1: fast to build) and run one input."""
    result = compile_model(model_zoo.get_model(name))
    write_files(result.files, tmp_path)
    binary = build_host(tmp_path, PREFIX, tmp_path / "model_rows", opt="-O1", extra_flags=row_trace_flags(PREFIX))
    return trace_rows_host(binary, make_inputs(result.graph, 1)[0]), result.plan.steps


def assert_same_trace(ours: list, planned: list) -> None:
    assert ours == planned, first_difference(ours, planned)


def test_flagship_engine_runs_the_planned_rows(tmp_path, monkeypatch):
    ours, steps = engine_trace(FLAGSHIP, tmp_path)
    assert any(kind == "write" for kind, *_ in ours)  # the trace is live: pipelines reported rows
    assert_same_trace(ours, planned_trace(steps))

    # The comparison has teeth: a planner whose convolutions read one row further ahead
    # than the engine (an off-by-one in the window) no longer matches.
    exact_window = rows.input_window

    def one_row_ahead(stage, tensor, y):
        first, last = exact_window(stage, tensor, y)
        return first, min(last + 1, rows.tensor_rows(tensor) - 1)

    monkeypatch.setattr(rows, "input_window", one_row_ahead)
    assert ours != planned_trace(steps)


@pytest.mark.full
@pytest.mark.parametrize("name", sorted(set(model_zoo.MODELS) - {FLAGSHIP}))
def test_every_fixture_engine_runs_the_planned_rows(name, tmp_path):
    ours, steps = engine_trace(name, tmp_path)
    assert_same_trace(ours, planned_trace(steps))


def test_a_ring_outside_the_arena_stops_the_build(tmp_path):
    """Only a ring moves past the arena's end (every layer's output stays put), and model.c's
    compile-time assertion refuses to compile."""
    result = compile_model(model_zoo.get_model(FLAGSHIP))
    plan = result.plan
    ring = next(plan.lifetimes.of(t) for op in plan.steps if isinstance(op, ir.RowPipeline)
                for t in op.internal_tensors())
    moved = dataclasses.replace(plan, offsets={**plan.offsets, id(ring): plan.arena_bytes})
    write_files(render(result.graph, moved, Options()), tmp_path)
    build = subprocess.run([find_compiler(), *C_WARNINGS, "-fsyntax-only", "-I", str(tmp_path),
                            str(tmp_path / f"{PREFIX}_model.c")], capture_output=True, text=True)
    assert build.returncode != 0 and "regions_fit_in_arena" in build.stderr, build.stderr[-2000:]
