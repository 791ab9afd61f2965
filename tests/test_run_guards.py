"""`mnv2_run` refuses to compute on an arena in an impossible state.

A test harness (below) damages the arena on purpose: it writes past the arena from the trace
hook after a chosen layer (as an overrunning kernel would), writes past the input before a
run (as a careless caller would), or calls `mnv2_run` again from inside a run. The generated
guards must turn each into an error code (see templates/model.h.j2), and the debug build
(-DMNV2_DEBUG_CANARIES) must name the layer.
"""

from __future__ import annotations

import subprocess

import pytest

import model_zoo
from conftest import require_tools
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.targets import C_WARNINGS

MODEL = "mnv2_a035_96_c10"
LAYER = 3  # the layer after which the harness overruns the arena

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mnv2_model.h"

enum { NORMAL, OVERRUN_AFTER_LAYER, ZERO_OVERRUN_AFTER_LAYER, REENTER, CALLER_OVERRUN };
static int mode;
static int inner = -1;

void mnv2_trace(int32_t layer, const void *data, int32_t bytes)
{
    int8_t *past_end = (int8_t *)(uintptr_t)data + (MNV2_ARENA_BYTES - LAYER_OFFSET);
    (void)bytes;
    if (layer == OVERRUN_LAYER && mode == OVERRUN_AFTER_LAYER) {
        *(volatile int8_t *)past_end = 0x5A;
    }
    if (layer == OVERRUN_LAYER && mode == ZERO_OVERRUN_AFTER_LAYER) {
        *(volatile int8_t *)past_end = 0;
    }
    if (layer == 0 && mode == REENTER) {
        inner = mnv2_run();
    }
}

int main(int argc, char **argv)
{
    int first, second;
    mode = argc > 1 ? atoi(argv[1]) : NORMAL;
    memset(mnv2_input(), 0, MNV2_INPUT_BYTES);
    if (mode == CALLER_OVERRUN) {
        ((volatile int8_t *)mnv2_input())[MNV2_ARENA_BYTES - INPUT_OFFSET] = 1;
    }
    first = mnv2_run();
    second = mnv2_run();
    printf("%d %d %d\n", first, second, inner);
    return 0;
}
"""
NORMAL, OVERRUN, ZERO_OVERRUN, REENTER, CALLER_OVERRUN = range(5)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The generated C and, from the compile's own plan, the arena offsets of LAYER's output
    and of the input, where the harness aims its overruns."""
    out = tmp_path_factory.mktemp("guards")
    result = compile_model(model_zoo.get_model(MODEL))
    write_files(result.files, out)
    plan = result.plan
    return out, plan.offset(plan.steps[LAYER].output), plan.offset(result.graph.input)


def build(generated, tmp_path, debug: bool):
    require_tools("gcc")
    compiler = "gcc"
    generated, layer_offset, input_offset = generated
    harness = tmp_path / "guards_main.c"
    harness.write_text(HARNESS)
    binary = tmp_path / ("guards_debug" if debug else "guards")
    defines = [f"-DOVERRUN_LAYER={LAYER}", f"-DLAYER_OFFSET={layer_offset}",
               f"-DINPUT_OFFSET={input_offset}", "-DMNV2_TRACE"] + (["-DMNV2_DEBUG_CANARIES"] if debug else [])
    subprocess.run([compiler, "-O1", *C_WARNINGS, *defines, "-I", str(generated),
                    *map(str, sorted(generated.glob("*.c"))), str(harness), "-o", str(binary)], check=True)
    return binary


def run(binary, mode: int) -> tuple[int, int, int]:
    result = subprocess.run([str(binary), str(mode)], capture_output=True, text=True, check=True, timeout=60)
    first, second, inner = map(int, result.stdout.split())
    return first, second, inner


@pytest.fixture(scope="module")
def binaries(generated, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard_bins")
    return {debug: build(generated, tmp, debug) for debug in (False, True)}


@pytest.mark.parametrize("debug", [False, True])
def test_normal_runs_succeed(binaries, debug):
    assert run(binaries[debug], NORMAL) == (0, 0, -1)


@pytest.mark.parametrize("debug", [False, True])
def test_reentrant_call_is_refused_and_the_outer_run_completes(binaries, debug):
    assert run(binaries[debug], REENTER) == (0, 0, 1)  # MNV2_ERROR_BUSY inside, OK outside


@pytest.mark.parametrize("debug", [False, True])
def test_caller_writing_past_the_input_is_caught_before_the_run(binaries, debug):
    first, second, _ = run(binaries[debug], CALLER_OVERRUN)
    assert first == second == 2  # MNV2_ERROR_ARENA, and it stays so: the arena is not trusted


def test_overrun_by_a_layer_is_caught_at_the_end_of_the_run(binaries):
    first, second, _ = run(binaries[False], OVERRUN)
    assert first == second == 2


def test_debug_canaries_name_the_layer_that_overran(binaries):
    first, second, _ = run(binaries[True], OVERRUN)
    assert first == 256 + LAYER  # MNV2_ERROR_CANARY + layer
    assert second == 2  # the damaged canary is seen on entry to the next run


def test_debug_canaries_catch_a_stray_zero(binaries):
    """The release guard expects zeros; only the debug pattern can see a zero written over it."""
    assert run(binaries[False], ZERO_OVERRUN)[0] == 0
    assert run(binaries[True], ZERO_OVERRUN)[0] == 256 + LAYER
