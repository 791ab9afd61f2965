"""The issue's matrix of ONNX MobileNetV2s (tests/onnx_zoo.py MATRIX: width 0.35 and 1.0, 96 and
128 px, 10 and 1000 classes, QOperator and QDQ, u8 and s8 activations, legacy and dynamo
exporters: 64 models) bit-exact against ONNX Runtime on the host and under QEMU on the M4
(mps2-an386) and the M55 (mps3-an547), with whatever kernels the compiler picks for each.

A QOperator model and its QDQ twin (the same float graph and calibration) compile to one C:
every generated file is asserted byte-identical but for the banner's `Model:` line, for the
host and for each board. That C is built and run once per target, and its outputs are compared
with ONNX Runtime's for both model files, so each run below is a run of both cells.

Inputs: 50 random plus the all-min and all-max ones (52) on every target, every cell, but
width 1.0 on the M55: the first 6 random ones plus the extremes (8). A width-1.0 inference is
79 to 141 M instructions on the M4 (0.2 to 0.3 s of QEMU) and 29 M (96 px) to 44 M (128 px)
on the M55, whose Helium instructions QEMU 7.2 emulates some 15 times slower than the M4's
(~32 M a second against ~490 M: 1 to 2 s an inference); the 44 other inputs on the 16
width-1.0 C files would add some 16 minutes of CPU, 8 of CI's wall time, which CI's 30
does not have. Tier: fast = run by default, full = CI and `pytest --full`. ONNX Runtime's
outputs of a model are computed once for its host and board tests
(onnx_checks.onnxruntime_reference).

| width | px  | classes | act   | exporter | cells (QOp, QDQ: one C) | host      | M4       | M55      |
|-------|-----|---------|-------|----------|-------------------------|-----------|----------|----------|
| 0.35  | 96  | 10      | uint8 | legacy   | both                    | 52 fast   | 52 fast  | 52 fast  |
| 0.35  | 96  | 10      | uint8 | dynamo   | both                    | 52 fast   | 52 full  | 52 full  |
| 0.35  | 96  | 10      | int8  | legacy   | both                    | 52 fast   | 52 full  | 52 full  |
| 0.35  | 96  | 10      | int8  | dynamo   | both                    | 52 fast   | 52 full  | 52 full  |
| 0.35  | 96  | 1000    | uint8 | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 96  | 1000    | uint8 | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 96  | 1000    | int8  | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 96  | 1000    | int8  | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 10      | uint8 | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 10      | uint8 | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 10      | int8  | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 10      | int8  | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 1000    | uint8 | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 1000    | uint8 | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 1000    | int8  | legacy   | both                    | 52 full   | 52 full  | 52 full  |
| 0.35  | 128 | 1000    | int8  | dynamo   | both                    | 52 full   | 52 full  | 52 full  |
| 1.0   | 96  | 10      | uint8 | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 10      | uint8 | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 10      | int8  | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 10      | int8  | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 1000    | uint8 | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 1000    | uint8 | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 1000    | int8  | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 96  | 1000    | int8  | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 10      | uint8 | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 10      | uint8 | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 10      | int8  | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 10      | int8  | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 1000    | uint8 | legacy   | both                    | 52 fast   | 52 full  | 8 full   |
| 1.0   | 128 | 1000    | uint8 | dynamo   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 1000    | int8  | legacy   | both                    | 52 full   | 52 full  | 8 full   |
| 1.0   | 128 | 1000    | int8  | dynamo   | both                    | 52 fast   | 52 full  | 8 full   |

test_table_is_the_tests checks this table against the parametrization below.
"""

from __future__ import annotations

import numpy as np
import pytest

import onnx_zoo
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.ir import RowPipeline
from mnv2gen.verification.compare import make_inputs
from onnx_checks import assert_matches_onnxruntime, assert_same_c, onnxruntime_reference, run_on_host, run_under_qemu

BOARD_COLUMNS = {"mps2-an386": "M4", "mps3-an547": "M55"}  # Cortex-M4F, Cortex-M55
RANDOM_INPUTS = 50
# Random inputs under QEMU by board and width (the docstring says why the M55 runs 6 at width 1.0).
RANDOM_INPUTS_UNDER_QEMU = {("mps2-an386", 0.35): 50, ("mps2-an386", 1.0): 50,
                            ("mps3-an547", 0.35): 50, ("mps3-an547", 1.0): 6}
# The C files: one per QOperator cell, each also its QDQ twin's.
QOPERATOR = [cell for cell in onnx_zoo.MATRIX if not cell.qdq]
FAST_ON_HOST = {(0.35, 96, 10, a, e) for a in onnx_zoo.ACTIVATIONS for e in onnx_zoo.EXPORTERS} | {
    (1.0, 128, 1000, "uint8", "legacy"), (1.0, 128, 1000, "int8", "dynamo")}
# The ops after the trunk's pipelines: the dynamo head's float mean (left in float by the quantizer).
HEADS = {"legacy": ["Mean", "Reshape", "FullyConnected", "Dequantize"],
         "dynamo": ["FloatMean", "FullyConnected", "Dequantize"]}
FAST_ON_BOARDS = {(0.35, 96, 10, "uint8", "legacy")}


def _key(cell: onnx_zoo.Cell) -> tuple:
    return cell.width, cell.size, cell.classes, cell.activation, cell.exporter


def _tiered(cells, fast: set) -> list:
    return [pytest.param(cell, id=cell.id.replace("-qoperator", ""),
                         marks=() if _key(cell) in fast else pytest.mark.full) for cell in cells]


def _compile_twins(cell: onnx_zoo.Cell, options: Options):
    """The cell's C and its QDQ twin's, asserted to be one C."""
    result = compile_model(cell.path(), options)
    assert_same_c(result, compile_model(cell.twin().path(), options))
    return result


def _references(cell: onnx_zoo.Cell, result) -> tuple[np.ndarray, dict]:
    """The random inputs and the extremes, and ONNX Runtime's outputs for them of the cell's
    model and its twin's (computed once for the host and both boards)."""
    inputs = make_inputs(result.graph, RANDOM_INPUTS)
    return inputs, {model: onnxruntime_reference(model.path(), result, inputs) for model in (cell, cell.twin())}


@pytest.mark.parametrize("cell", _tiered(QOPERATOR, FAST_ON_HOST))
def test_bit_exact_on_host(cell, tmp_path):
    result = _compile_twins(cell, Options())
    graph = result.graph
    assert graph.input.shape == (1, 3, cell.size, cell.size) and graph.output.shape == (1, cell.classes)
    head = HEADS[cell.exporter]
    assert [type(op).__name__ for op in graph.ops[-len(head):]] == head
    assert all(isinstance(op, RowPipeline) for op in graph.ops[:-len(head)])  # the trunk all streamed
    inputs, references = _references(cell, result)
    ours = run_on_host(result, tmp_path / "c", inputs)
    assert len({output.tobytes() for output in ours}) > 1  # the inputs reach the output
    for model, theirs in references.items():
        assert_matches_onnxruntime(model.path(), result, inputs, ours, "the host", tmp_path / "c", theirs)


@pytest.mark.parametrize("board", BOARD_COLUMNS)
@pytest.mark.parametrize("cell", _tiered(QOPERATOR, FAST_ON_BOARDS))
def test_bit_exact_under_qemu(cell, board, tmp_path):
    """Whatever kernels the compiler picks for the board's core, every input in one boot."""
    result = _compile_twins(cell, Options(target=BOARDS[board].core))
    inputs, references = _references(cell, result)
    run = np.r_[0:RANDOM_INPUTS_UNDER_QEMU[board, cell.width], RANDOM_INPUTS:RANDOM_INPUTS + 2]  # and the extremes
    ours = run_under_qemu(board, result, tmp_path / "c", inputs[run])
    assert len({output.tobytes() for output in ours}) > 1
    for model, theirs in references.items():
        assert_matches_onnxruntime(model.path(), result, inputs[run], ours, board, reference=theirs[run])


def test_table_is_the_tests():
    """The docstring's table names each C once, with the inputs and tier each target runs."""
    rows = [[field.strip() for field in line.strip("| ").split("|")]
            for line in __doc__.splitlines() if line.startswith("| 0.35") or line.startswith("| 1.0")]
    assert len(rows) == len(QOPERATOR) and 2 * len(QOPERATOR) == len(onnx_zoo.MATRIX)
    expected = []
    for cell in QOPERATOR:
        tier_host = "fast" if _key(cell) in FAST_ON_HOST else "full"
        tier_boards = "fast" if _key(cell) in FAST_ON_BOARDS else "full"
        on_boards = [f"{RANDOM_INPUTS_UNDER_QEMU[board, cell.width] + 2} {tier_boards}" for board in BOARD_COLUMNS]
        expected.append([str(cell.width), str(cell.size), str(cell.classes), cell.activation, cell.exporter, "both",
                         f"{RANDOM_INPUTS + 2} {tier_host}", *on_boards])
    assert [[" ".join(field.split()) for field in row] for row in rows] == expected
    assert {cell for c in QOPERATOR for cell in (c, c.twin())} == set(onnx_zoo.MATRIX)
