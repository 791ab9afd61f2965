"""Memory placement: weights and arena in chosen linker sections, and an arena the caller owns.

`--weights-section` / `--arena-section` put the arrays in named sections (checked in the
object file); `--arena external` leaves the arena to the caller, so two models can run in
turn in one buffer: a host program below does that, and both must equal TFLite bit for bit,
also with the debug canaries on. The guards must keep working in that mode.
"""

from __future__ import annotations

import struct
import subprocess

import numpy as np
import pytest

import model_zoo
from conftest import require_tools
from mnv2gen.cli import main
from mnv2gen.codegen.render import ArenaMode, Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.host_sim.build import build_host
from mnv2gen.host_sim.runner import run_host
from mnv2gen.targets import C_WARNINGS
from mnv2gen.verification import oracle
from mnv2gen.verification.compare import make_inputs, numpy_dtype, same_bytes

FIRST, SECOND = "mnv2_a035_96_c10", "mnv1_a025_96_c10"  # two different models, different arenas

# Runs model `a` then model `b` on each pair of inputs, in one buffer of the larger arena.
# Request on stdin: count N, then N inputs of a, then N inputs of b; writes, per pair, a's
# output then b's. Exit 10 + the failing call's code on an error.
SHARED_ARENA_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "a_model.h"
#include "b_model.h"

#define SHARED_BYTES (A_ARENA_BUFFER_BYTES > B_ARENA_BUFFER_BYTES ? A_ARENA_BUFFER_BYTES : B_ARENA_BUFFER_BYTES)
static union { uint8_t bytes[SHARED_BYTES]; double align; } shared;
static uint8_t inputs_a[8][A_INPUT_BYTES], inputs_b[8][B_INPUT_BYTES];

#define CHECK(call) do { int status_ = (call); if (status_ != 0) { fprintf(stderr, "%s: %d\n", #call, status_); return 10 + status_; } } while (0)

int main(void)
{
    uint32_t count, i;
    if (fread(&count, 4, 1, stdin) != 1 || count > 8
        || fread(inputs_a, A_INPUT_BYTES, count, stdin) != count
        || fread(inputs_b, B_INPUT_BYTES, count, stdin) != count) {
        return 3;
    }
    fprintf(stderr, "shared arena: %u bytes (a %u, b %u)\n", (unsigned)SHARED_BYTES,
            (unsigned)A_ARENA_BUFFER_BYTES, (unsigned)B_ARENA_BUFFER_BYTES);
    for (i = 0; i < count; ++i) {
        CHECK(a_set_arena(&shared, sizeof shared));
        memcpy(a_input(), inputs_a[i], A_INPUT_BYTES);
        CHECK(a_run());
        fwrite(a_output(), 1, A_OUTPUT_BYTES, stdout);
        CHECK(b_set_arena(&shared, sizeof shared));
        memcpy(b_input(), inputs_b[i], B_INPUT_BYTES);
        CHECK(b_run());
        fwrite(b_output(), 1, B_OUTPUT_BYTES, stdout);
    }
    return 0;
}
"""

# The error paths of set_arena and the guards in external mode; prints one code per check.
GUARDS_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "a_model.h"

static union { uint8_t bytes[A_ARENA_BUFFER_BYTES + 8]; double align; } buffer;

int main(void)
{
    int before = a_run();
    int no_input = a_input() == NULL && a_output() == NULL;
    int null_arena = a_set_arena(NULL, sizeof buffer);
    int small = a_set_arena(&buffer, A_ARENA_BUFFER_BYTES - 1);
    int misaligned = a_set_arena(buffer.bytes + 1, A_ARENA_BUFFER_BYTES);
    int after_failure = a_run();
    int ok = a_set_arena(&buffer, sizeof buffer);
    int run, overrun, still_broken, rearmed;
    memset(a_input(), 0, A_INPUT_BYTES);
    run = a_run();
    buffer.bytes[A_ARENA_BUFFER_BYTES - 1] ^= 1; /* past the arena: the last guard byte */
    overrun = a_run();
    still_broken = a_run();
    a_set_arena(&buffer, sizeof buffer);
    memset(a_input(), 0, A_INPUT_BYTES);
    rearmed = a_run();
    printf("%d %d %d %d %d %d %d %d %d %d %d\n", before, no_input, null_arena, small, misaligned,
           after_failure, ok, run, overrun, still_broken, rearmed);
    return 0;
}
"""


def _compile(name: str, out, **options):
    result = compile_model(model_zoo.get_model(name), Options(**options))
    write_files(result.files, out)
    return result


def _build(c_dirs, main_source, binary, *flags):
    require_tools("gcc")
    sources = [str(p) for d in c_dirs for p in sorted(d.glob("*.c"))]
    includes = [f for d in c_dirs for f in ("-I", str(d))]
    command = ["gcc", "-O2", *C_WARNINGS, *flags, *includes, *sources, str(main_source), "-o", str(binary)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


def _expected(name: str, result, inputs):
    output = result.graph.output
    reference = oracle.reference_outputs(model_zoo.get_model(name), inputs, output.shape, numpy_dtype(output))
    assert reference.aborted == 0
    return reference.outputs


def test_default_c_has_no_placement():
    files = compile_model(model_zoo.get_model(FIRST)).files
    assert "__attribute__((section" not in files["mnv2_weights.c"] + files["mnv2_model.c"]
    assert "set_arena" not in files["mnv2_model.h"]


def test_sections_hold_the_weights_and_arena_and_stay_bit_exact(tmp_path):
    name = FIRST
    result = _compile(name, tmp_path / "c", weights_section=".mnv2_qspi", arena_section=".mnv2_ccm")
    binary = build_host(tmp_path / "c", "mnv2", tmp_path / "model")
    symbols = subprocess.run(["objdump", "-t", str(binary)], capture_output=True, text=True, check=True).stdout
    sections = {line.split()[-1]: line.split("\t")[0].split()[-1] for line in symbols.splitlines()
                if line.split() and line.split()[-1] in ("mnv2_arena", "mnv2_layer0_s0_weights")}
    assert sections == {"mnv2_arena": ".mnv2_ccm", "mnv2_layer0_s0_weights": ".mnv2_qspi"}
    inputs = make_inputs(result.graph, 2, seed=1)
    ours = run_host(binary, inputs, numpy_dtype(result.graph.output), result.graph.output.shape)
    assert same_bytes(ours, _expected(name, result, inputs)).all()


@pytest.mark.parametrize("canaries", [False, True], ids=["plain", "canaries"])
def test_two_models_share_one_external_arena_bit_exact(tmp_path, canaries):
    first = _compile(FIRST, tmp_path / "a", prefix="a", arena=ArenaMode.EXTERNAL)
    second = _compile(SECOND, tmp_path / "b", prefix="b", arena=ArenaMode.EXTERNAL)
    assert first.arena_bytes != second.arena_bytes
    (tmp_path / "main.c").write_text(SHARED_ARENA_MAIN)
    flags = ("-DA_DEBUG_CANARIES", "-DB_DEBUG_CANARIES") if canaries else ()
    binary = _build([tmp_path / "a", tmp_path / "b"], tmp_path / "main.c", tmp_path / "shared", *flags)
    count = 3
    inputs_a = make_inputs(first.graph, count - 2, seed=2)
    inputs_b = make_inputs(second.graph, count - 2, seed=3)
    request = struct.pack("<I", count) + inputs_a.tobytes() + inputs_b.tobytes()
    run = subprocess.run([str(binary)], input=request, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    guard = 64 if canaries else 8
    assert f"shared arena: {max(first.arena_bytes, second.arena_bytes) + guard} bytes" in run.stderr.decode()
    a_out, b_out = first.graph.output, second.graph.output
    a_bytes, b_bytes = a_out.nbytes, b_out.nbytes
    pairs = [run.stdout[i * (a_bytes + b_bytes):(i + 1) * (a_bytes + b_bytes)] for i in range(count)]
    ours_a = np.stack([np.frombuffer(p[:a_bytes], numpy_dtype(a_out)).reshape(a_out.shape) for p in pairs])
    ours_b = np.stack([np.frombuffer(p[a_bytes:], numpy_dtype(b_out)).reshape(b_out.shape) for p in pairs])
    assert same_bytes(ours_a, _expected(FIRST, first, inputs_a)).all()
    assert same_bytes(ours_b, _expected(SECOND, second, inputs_b)).all()


@pytest.mark.parametrize("canaries", [False, True], ids=["plain", "canaries"])
def test_external_arena_guards(tmp_path, canaries):
    _compile(FIRST, tmp_path / "a", prefix="a", arena="external")
    (tmp_path / "main.c").write_text(GUARDS_MAIN)
    binary = _build([tmp_path / "a"], tmp_path / "main.c", tmp_path / "guards",
                    *(("-DA_DEBUG_CANARIES",) if canaries else ()))
    codes = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    no_arena, size, align, arena_error = "3", "4", "5", "2"
    # run before set_arena, input/output NULL, NULL buffer, too small, misaligned, run after a
    # failed set_arena, a good set_arena, a run, an overrun caught, still caught, re-armed.
    assert codes == [no_arena, "1", no_arena, size, align, no_arena, "0", "0", arena_error, arena_error, "0"]


@pytest.mark.parametrize("flags", [
    ["--weights-section", "1starts_with_digit"],
    ["--arena-section", '.x"); int evil(void'],
    ["--weights-section", "a" * 64],
    ["--arena-section", ".ccm", "--arena", "external"],
    ["--arena", "heap"],
])
def test_bad_placement_flags_are_one_line_errors(tmp_path, capsys, flags):
    code = main(["compile", str(model_zoo.get_model(FIRST)), "--out", str(tmp_path / "c"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "c").exists()


# Calls set_arena and run from inside a run (a trace hook), as an interrupt handler might.
REENTRY_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "a_model.h"

static union { uint8_t bytes[A_ARENA_BUFFER_BYTES]; double align; } buffer;
static int inner_set = -1, inner_run = -1;

void a_trace(int32_t layer, const void *data, int32_t bytes)
{
    (void)data;
    (void)bytes;
    if (layer == 0) {
        inner_set = a_set_arena(&buffer, sizeof buffer);
        inner_run = a_run();
    }
}

int main(void)
{
    int outer;
    a_set_arena(&buffer, sizeof buffer);
    memset(a_input(), 0, A_INPUT_BYTES);
    outer = a_run();
    printf("%d %d %d\n", outer, inner_set, inner_run);
    return 0;
}
"""


def test_external_arena_busy_flag_refuses_set_arena_and_run_during_a_run(tmp_path):
    _compile(FIRST, tmp_path / "a", prefix="a", arena="external")
    (tmp_path / "main.c").write_text(REENTRY_MAIN)
    binary = _build([tmp_path / "a"], tmp_path / "main.c", tmp_path / "reentry", "-DA_TRACE")
    codes = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    assert codes == ["0", "1", "1"]  # the outer run completes; both inner calls are busy
