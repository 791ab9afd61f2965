"""The arena planner and its checker."""

from __future__ import annotations

import pytest

import model_zoo
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, plan_model
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.frontend import load_model
from mnv2gen.plan.arena import PlanError, check_plan, plan_arena


def test_flagship_arena_is_exact_checked_and_below_the_paper_bound():
    """The default (streaming) schedule of the flagship: 30,720 bytes, replayed byte by byte
    by the checker, and below the MobileNetV2 paper's bound M(G)."""
    result = compile_model(model_zoo.get_model("mnv2_a035_96_c1000"))
    check_plan(result.plan)  # raises PlanError on any byte overwritten before its last read
    assert result.arena_bytes == 30_720
    assert result.arena_bytes < result.paper_bound == 64_512


def test_layer_by_layer_plan_is_between_the_largest_step_and_keeping_everything():
    graph = load_model(model_zoo.get_model("mnv2_a035_96_c1000"))
    plan = plan_arena(graph)
    check_plan(plan)
    # Layer by layer, no arena is below the largest input+output pair...
    largest_pair = max(sum(t.nbytes for t in op.activation_inputs()) + op.output.nbytes for op in graph.ops)
    assert plan.arena_bytes >= largest_pair
    # ...and reusing memory must stay well below keeping every activation alive.
    assert plan.arena_bytes < sum(t.nbytes for t in graph.activations()) / 3


def test_checker_rejects_overlapping_live_buffers():
    graph = load_model(model_zoo.get_model("mnv2_a035_96_c10"))
    plan = plan_arena(graph)
    first_op = plan.steps[0]
    a, b = plan.lifetimes.of(first_op.input), plan.lifetimes.of(first_op.output)
    plan.offsets[id(b)] = plan.offsets[id(a)]  # put the output on top of its own input
    with pytest.raises(PlanError):
        check_plan(plan)


def test_fully_connected_scratch_is_placed_and_proved_without_growing_the_arena():
    """FULLY_CONNECTED_STAGED's scratch (the DSP kernels': the flagship head's 1,280 inputs as
    SMLAD pairs) is a buffer of the plan like any other: placed in the arena's free bytes at
    that step, and replayed by the checker, which rejects it on the layer's input."""
    model = model_zoo.get_model("mnv2_a035_96_c1000")
    planned = plan_model(model, Options(target=BOARDS["mps2-an386"].core))
    plan = planned.plan
    fc = next(op for op in plan.steps if op.op_name == "FULLY_CONNECTED")
    scratch = plan.scratch(fc)
    assert scratch is not None and scratch.nbytes == 2 * 1280
    assert plan.arena_bytes == 30_720  # as without it
    plan.offsets[id(plan.lifetimes.of(scratch))] = plan.offset(fc.input)
    with pytest.raises(PlanError, match="scratch"):
        check_plan(plan)
    helium = plan_model(model, Options(target=BOARDS["mps3-an547"].core)).plan  # no staging there
    assert helium.scratch(next(op for op in helium.steps if op.op_name == "FULLY_CONNECTED")) is None


def test_reshape_aliases_its_input():
    graph = load_model(model_zoo.get_model("fc_rows_head"))
    plan = plan_arena(graph)
    for op in graph.ops:
        if op.op_name == "RESHAPE":
            assert plan.offset(op.input) == plan.offset(op.output)
