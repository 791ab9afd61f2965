"""The arena planner and its checker."""

from __future__ import annotations

import pytest

import model_zoo
from mnv2gen.frontend import load_model
from mnv2gen.plan.arena import PlanError, check_plan, plan_arena


def test_flagship_plan_is_checked_and_no_larger_than_the_two_largest_neighbours():
    graph = load_model(model_zoo.get_model("mnv2_a035_96_c1000"))
    plan = plan_arena(graph)
    # Layer by layer, the arena can't be below the largest input+output pair...
    largest_pair = max(sum(t.nbytes for t in op.activation_inputs()) + op.output.nbytes for op in graph.ops)
    assert plan.arena_bytes >= largest_pair
    # ...and must stay well below keeping every activation alive.
    assert plan.arena_bytes < sum(t.nbytes for t in graph.activations()) / 3


def test_checker_rejects_overlapping_live_buffers():
    graph = load_model(model_zoo.get_model("mnv2_a035_96_c10"))
    plan = plan_arena(graph)
    first_op = plan.steps[0]
    a, b = plan.lifetimes.of(first_op.input), plan.lifetimes.of(first_op.output)
    plan.offsets[id(b)] = plan.offsets[id(a)]  # put the output on top of its own input
    with pytest.raises(PlanError):
        check_plan(plan)


def test_reshape_aliases_its_input():
    graph = load_model(model_zoo.get_model("fc_rows_head"))
    plan = plan_arena(graph)
    for op in graph.ops:
        if op.op_name == "RESHAPE":
            assert plan.offset(op.input) == plan.offset(op.output)
