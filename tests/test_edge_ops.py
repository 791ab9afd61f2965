"""The byte-to-byte ops at a model's input: MUL and ADD by a constant (a Keras `Rescaling`
input layer) as tables with TFLite's arithmetic, and the tables and QUANTIZE run in place
(their output over the input they have read, each byte proven by the replay)."""

from __future__ import annotations

import numpy as np
import pytest

import model_zoo
import tflite_edit
from mnv2gen import ir, quant
from mnv2gen.cli import main
from mnv2gen.compiler import compile_model
from mnv2gen.frontend.tflite import load_tflite
from mnv2gen.plan.check import PlanError, check_plan
from mnv2gen.verification import oracle

RESCALING = "mnv2_a035_96_rescaling"


def _tables(graph: ir.Graph) -> list[tuple[ir.ElementwiseConstant, np.ndarray]]:
    out = []
    for op in graph.ops:
        if isinstance(op, ir.ElementwiseConstant):
            if op.operation is ir.ConstantOperation.MUL:
                table = quant.mul_constant_table(op.input, op.constant, op.output, op.activation)
            else:
                table = quant.add_constant_table(op.input, op.constant, op.output, op.activation, op.constant_first)
            out.append((op, table))
    return out


def test_rescaling_tables_equal_tflite_on_every_byte():
    """Every entry of the MUL and ADD tables against TFLite's own intermediate tensors, with
    an input holding all 256 bytes."""
    path = model_zoo.get_model(RESCALING)
    graph = load_tflite(path)
    tables = _tables(graph)
    assert [op.op_name for op, _ in tables] == ["MUL", "ADD"]
    x = np.resize(np.arange(-128, 128, dtype=np.int8), graph.input.shape)
    tensors = oracle.reference_tensors(path, x)
    for op, table in tables:
        given, produced = tensors[op.input.index].reshape(-1), tensors[op.output.index].reshape(-1)
        assert np.array_equal(table[given.astype(np.int64) + 128], produced), op.op_name
    assert np.unique(tensors[tables[0][0].input.index]).size == 256


def test_rescaling_model_is_bit_exact_and_as_lean_as_the_flagship(capsys):
    path = model_zoo.get_model(RESCALING)
    assert main(["verify", str(path), "-n", "4", "--no-tflm", "--quiet"]) == 0
    # The two tables are composed into one, run in place: the arena is the int8 network's alone.
    result = compile_model(path)
    assert result.arena_bytes == 30_720
    assert result.plan.steps[0].describe() == "[MUL > ADD] 1x96x96x3 -> 1x96x96x3"


def test_uint8_input_at_128_is_bit_exact():
    assert main(["verify", str(model_zoo.get_model("mnv2_a035_128_uint8")), "-n", "2", "--no-tflm", "--quiet"]) == 0


def test_in_place_plans_are_proven_byte_by_byte():
    """The replay accepts the in-place QUANTIZE, and refuses it once its output starts one
    element past its input (element i would be written over element i + 1, still unread)."""
    result = compile_model(model_zoo.get_model("mnv2_a035_128_uint8"))
    plan = result.plan
    quantize = plan.steps[0]
    assert isinstance(quantize, ir.Quantize) and plan.offset(quantize.output) == plan.offset(quantize.input)
    check_plan(plan)
    output_buffer = plan.lifetimes.of(quantize.output)
    plan.offsets[id(output_buffer)] += 8  # still aligned: the checker must object to the overlap itself
    with pytest.raises(PlanError, match="destroys"):
        check_plan(plan)


def _with_mul(tmp_path, name: str, edit) -> str:
    model = tflite_edit.load(model_zoo.get_model(RESCALING))
    edit(model, model.find_op("MUL"))
    return str(tflite_edit.save(model, tmp_path / name))


def test_mul_of_two_activations_is_named_with_the_unsupported_ops(tmp_path, capsys):
    def both_activations(model, mul):
        mul.inputs = [mul.inputs[0], mul.inputs[0]]

    assert main(["compile", _with_mul(tmp_path, "square.tflite", both_activations), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MUL x1 (first: op 0)" in err and "MUL (by a constant)" in err, err


def test_a_constant_of_several_values_is_refused(tmp_path, capsys):
    def three_values(model, mul):
        constant = model.graph.tensors[mul.inputs[1]]
        value = model.buffers[constant.buffer]
        model.buffers[constant.buffer] = value * 3
        constant.shape = [3]

    assert main(["compile", _with_mul(tmp_path, "wide.tflite", three_values), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only a one-element constant" in err, err
