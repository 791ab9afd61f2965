"""examples/pytorch/export_and_quantize.py: everything but the export (torch is not a
dependency, nor installed here) run as a user would, from a float ONNX model written as
torchvision's legacy exporter writes it, to C bit-exact against ONNX Runtime."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnx_zoo

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "pytorch" / "export_and_quantize.py"


def _example():
    spec = importlib.util.spec_from_file_location("export_and_quantize", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_needs_no_torch():
    run = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--calibration" in run.stdout, run.stderr


def test_calibration_reader_follows_onnxruntimes_protocol():
    example = _example()
    inputs = [np.full((1, 3, 4, 4), i, np.float32) for i in range(3)]
    reader = example.CalibrationReader("input", inputs)
    seen = [reader.get_next() for _ in range(4)]
    assert [s["input"][0, 0, 0, 0] for s in seen[:3]] == [0, 1, 2] and seen[3] is None
    reader.rewind()
    assert reader.get_next()["input"][0, 0, 0, 0] == 0


def test_calibration_arrays_from_a_folder(tmp_path):
    """.npy inputs are read in name order (image files need Pillow, not installed here)."""
    example = _example()
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((1, 3, 8, 8), i, np.float32))
    (tmp_path / "notes.txt").write_text("not an input")
    inputs = example.calibration_inputs(tmp_path, 8, 2)
    assert [x[0, 0, 0, 0] for x in inputs] == [0, 1] and inputs[0].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("quantized_input", [False, True], ids=["float-input", "quantized-input"])
def test_script_quantizes_compiles_and_verifies(quantized_input, tmp_path):
    float_path = tmp_path / "float.onnx"
    onnx.save(onnx_zoo.mobilenet_v2_float(0.35, 96, 10, seed=3), float_path)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        np.save(calibration / f"{i}.npy", rng.normal(0, 1, (1, 3, 96, 96)).astype(np.float32))
    out = tmp_path / "build"
    command = [sys.executable, str(SCRIPT), "--float-model", str(float_path), "--calibration", str(calibration),
               "--verify-inputs", "5", "--out", str(out)] + (["--quantized-input"] if quantized_input else [])
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "7/7 outputs identical" in run.stdout and "bit-exact" in run.stdout, run.stdout
    assert (out / "c" / "mnv2_model.c").exists() and (out / "model.onnx").exists()
