"""Degenerate but legal models: mnv2gen's behaviour is defined, bit-exact or refused.

A SOFTMAX whose input scale (times beta) is tiny makes all inputs nearly equal. Just above
TFLite's limit (beta * scale * 2**26 > 1) the model is legal and mnv2gen must equal TFLite
on every input TFLite survives; below it, TFLite aborts the process on every input, and
mnv2gen refuses the model with an explanation instead of inventing an answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_bit_exact

import model_zoo
import tflite_edit
from mnv2gen.verification import oracle
from mnv2gen.cli import main



def softmax_model(tmp_path, scale: float, classes: int):
    m = tflite_edit.load(model_zoo.single_op_model("softmax", 0))
    m.graph.tensors[0].quant.scale = [scale]
    for t in m.graph.tensors:
        t.shape = [1, classes]
    return tflite_edit.save(m, tmp_path / f"softmax_{scale:g}_{classes}.tflite")


@pytest.mark.parametrize("classes", [10, 100])
def test_softmax_scale_just_above_tflites_limit_is_bit_exact(classes, tmp_path):
    path = softmax_model(tmp_path, 1.6e-8, classes)  # beta * scale * 2**26 = 1.07
    _, report = assert_bit_exact(path, tmp_path / "out", count=30)
    assert report.matched_tflite > 0


def test_softmax_scale_below_tflites_limit_is_refused_and_tflite_aborts(tmp_path, capsys):
    path = softmax_model(tmp_path, 1e-9, 10)
    assert main(["compile", str(path), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "op 0 (SOFTMAX)" in message and "below 2**-26" in message and "TFLite" in message
    inputs = np.random.default_rng(0).integers(-128, 128, size=(3, 1, 10), dtype=np.int8)
    reference = oracle.reference_outputs(path, inputs, (1, 10), np.int8)
    assert reference.aborted == len(inputs)  # TFLite itself cannot run this model
