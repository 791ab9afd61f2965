"""The streaming schedule: fused row pipelines, rings, overlaps, and the checker's proof."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_bit_exact

import model_zoo
from mnv2gen import ir
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.plan.arena import PlanError, check_plan
from mnv2gen.verification.host import verify

FLAGSHIP = "mnv2_a035_96_c1000"
PAPER_BOUND = 27_648 + 36_864  # the stem: 96x96x3 in + 48x48x16 out


def test_flagship_arena_is_within_the_stretch_goal():
    result = compile_model(model_zoo.get_model(FLAGSHIP))
    assert result.paper_bound == PAPER_BOUND
    assert result.arena_bytes <= 32_768  # the flagship fits 32 KB of SRAM
    assert result.arena_bytes < result.paper_bound


@pytest.mark.parametrize("optimize, limit", [("balanced", PAPER_BOUND), ("speed", 138_240)])
def test_every_schedule_is_bit_exact(optimize, limit, tmp_path):
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, Options(optimize=optimize))
    assert result.arena_bytes <= limit
    write_files(result.files, tmp_path)
    report = verify(model, result, tmp_path, count=6, use_tflm=False)
    assert report.matched_tflite == report.inputs


def test_expansion_is_never_materialized():
    result = compile_model(model_zoo.get_model(FLAGSHIP))
    pipelines = [op for op in result.plan.steps if isinstance(op, ir.RowPipeline)]
    assert sum(len(p.stages) > 1 for p in pipelines) >= 17  # every inverted residual is fused
    for pipeline in pipelines:
        for t in pipeline.internal_tensors():
            buffer = result.plan.lifetimes.of(t)
            assert buffer.rows <= 3 < t.shape[1] or t.shape[1] <= 3, (t.name, buffer.rows)
    # The 48x48x48 expansion of block 1 would alone be 110,592 bytes.
    assert max(b.nbytes for b in result.plan.lifetimes.buffers) == 27_648  # only the input is that big


def test_explicit_pad_is_folded_and_stays_exact(out_dir):
    result, _ = assert_bit_exact(model_zoo.get_model("mnv2_a035_96_zeropad"), out_dir, count=10)
    assert not any(isinstance(op, ir.Pad) for op in result.graph.ops)


def test_checker_catches_a_ring_placed_over_unread_input():
    result = compile_model(model_zoo.get_model(FLAGSHIP))
    plan = result.plan
    stem = plan.steps[0]
    ring = plan.lifetimes.of(stem.internal_tensors()[0])
    plan.offsets[id(ring)] = plan.offset(stem.input) + 1024  # on input rows still to be read
    with pytest.raises(PlanError, match="before its last read|overwritten"):
        check_plan(plan)


def test_checker_catches_an_output_that_runs_ahead_of_its_input():
    result = compile_model(model_zoo.get_model(FLAGSHIP))
    plan = result.plan
    stem = plan.steps[0]
    # The block's output overlaps its input from offset 0 (proven safe); starting it further
    # into the input makes early output rows land on input rows not yet read.
    out = plan.lifetimes.of(stem.output)
    plan.offsets[id(out)] = plan.offset(stem.input) + 8 * 1024
    with pytest.raises(PlanError):
        check_plan(plan)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnv2gen.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).parent)


def test_memory_budget_refuses_a_plan_that_does_not_fit(tmp_path):
    model = str(model_zoo.get_model(FLAGSHIP))
    result = run_cli("compile", model, "--out", str(tmp_path), "--memory-budget", "20000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "over the budget of 20,000 bytes" in result.stderr
    assert run_cli("compile", model, "--out", str(tmp_path), "--memory-budget", "32768").returncode == 0


def test_report_json_lists_steps_bound_and_schedules():
    result = run_cli("report", str(model_zoo.get_model(FLAGSHIP)), "--json", "--no-tflm")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["paper_bound_bytes"] == PAPER_BOUND
    assert report["arena_bytes"] <= 32_768
    assert len(report["steps"]) >= 18 and all("live_bytes" in s for s in report["steps"])
    macs = {s["optimize"]: s["macs"] for s in report["schedules"]}
    assert set(macs) == {"memory", "balanced", "speed"}
    assert len(set(macs.values())) == 1  # rings, not recomputation: no schedule costs extra MACs
