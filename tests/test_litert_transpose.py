"""PyTorch models through litert-torch (.tflite with the NCHW input kept and a TRANSPOSE with
perm [0, 2, 3, 1] before the stem, explicit PADs): the TRANSPOSE folded into the first
pipeline's first stage, reading the NCHW input as an ONNX model's QuantizeLinear does; the C's
input is the model's NCHW tensor. Bit-exact against TFLite; any other TRANSPOSE refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import model_zoo
import tflite_edit
from mnv2gen import ir
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, plan_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.host_sim.build import build_host, row_trace_flags
from mnv2gen.host_sim.runner import trace_rows_host
from mnv2gen.verification.board import run_on_board
from mnv2gen.verification.compare import make_inputs
from mnv2gen.verification.host import verify
from test_engine_trace import PREFIX, assert_same_trace, planned_trace

NCHW = "mnv2_a035_96_c10_nchw"
# The input (27,648 B) is whole, and its planes are consumed a row of each at a time: the
# first pipeline's output can reuse fewer of its bytes than of an NHWC input (30,720 B).
ARENA = 40_032


def test_converter_emits_the_transpose():
    counts = model_zoo.op_counts(model_zoo.get_model(NCHW))
    assert counts == model_zoo.NCHW_MODELS[NCHW].expect_ops and counts["TRANSPOSE"] == 1


def test_transpose_is_the_first_stage_and_the_input_stays_nchw(out_dir):
    path = model_zoo.get_model(NCHW)
    result = compile_model(path)
    t = result.graph.input
    assert (t.dtype, t.shape, t.layout) == ("int8", (1, 3, 96, 96), ir.Layout.NCHW)
    first = result.plan.steps[0]
    assert isinstance(first, ir.RowPipeline) and isinstance(first.stages[0], ir.Quantize)
    assert first.stages[0].from_nchw and isinstance(first.stages[1], ir.Conv2D)
    assert not any(isinstance(op, ir.Quantize) for op in result.plan.steps)  # no whole-tensor copy
    assert result.plan.arena_bytes == ARENA
    header, model_c = result.files["mnv2_model.h"], result.files["mnv2_model.c"]
    assert "#define MNV2_INPUT_BYTES 27648" in header and "int8_t (NCHW)" in header
    assert "MNV2_STAGE_TRANSPOSE" in model_c
    write_files(result.files, out_dir)
    report = verify(path, result, out_dir, count=50)
    assert report.inputs == 52 and report.matched_tflite == report.inputs, report.first_mismatch
    assert report.distinct_outputs > 1


def test_other_tflite_c_has_no_transpose_stage():
    files = compile_model(model_zoo.get_model("mnv2_a035_96_c10")).files
    assert "TRANSPOSE" not in files["mnv2_kernels.h"] + files["mnv2_kernels.c"]


def test_engine_reads_the_planned_plane_rows(tmp_path):
    result = compile_model(model_zoo.get_model(NCHW))
    write_files(result.files, tmp_path)
    binary = build_host(tmp_path, PREFIX, tmp_path / "model_rows", opt="-O1", extra_flags=row_trace_flags(PREFIX))
    ours = trace_rows_host(binary, make_inputs(result.graph, 1)[0])
    assert ("read", 0, 2 * 96 + 95) in ours  # the last row of the third plane
    assert_same_trace(ours, planned_trace(result.plan.steps))


def _refused(path, tmp_path) -> str:
    run = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(path), "--out", str(tmp_path / "c")],
                         capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def test_transpose_inside_the_graph_is_refused(tmp_path):
    line = _refused(model_zoo.get_model("transpose_of_features"), tmp_path)
    assert "(TRANSPOSE): TRANSPOSE of tensor" in line and "perm [0, 3, 1, 2]" in line


@pytest.mark.parametrize("perm", [[0, 3, 1, 2], [0, 1, 2, 3], [0, 2, 3]])
def test_transpose_of_the_input_with_another_perm_is_refused(perm, tmp_path):
    model = tflite_edit.load(model_zoo.get_model(NCHW))
    graph = model.subgraphs[0]
    transpose = graph.operators[0]
    assert transpose.inputs[0] == graph.inputs[0]
    perm_tensor = graph.tensors[transpose.inputs[1]]
    perm_tensor.shape = [len(perm)]
    model.buffers[perm_tensor.buffer] = np.array(perm, np.int32).tobytes()
    line = _refused(tflite_edit.save(model, tmp_path / "perm.tflite"), tmp_path)
    assert f"TRANSPOSE of the model's input with perm {perm}" in line and "[0, 2, 3, 1]" in line


@pytest.mark.full
def test_bit_exact_on_emulated_cortex_m4(out_dir):
    """The DSP kernels behind the transposing stage, under QEMU."""
    from conftest import require_tools
    from test_firmware import TOOLS

    require_tools(*TOOLS)
    path, board = model_zoo.get_model(NCHW), BOARDS["mps2-an386"]
    result = compile_model(path, Options(target=board.core))
    write_files(result.files, out_dir)
    report = run_on_board(path, result, out_dir, board, count=3, per_layer=False)
    assert report.inputs == 5 and report.matched == report.inputs and report.bit_exact
