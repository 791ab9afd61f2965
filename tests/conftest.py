"""Shared helpers: compile a model, build it on the host, prove it equal to TFLite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from mnv2gen.compiler import compile_model, write_files  # noqa: E402
from mnv2gen.codegen.render import Options  # noqa: E402
from mnv2gen.verification.host import divergence_note, verify  # noqa: E402


def assert_bit_exact(model_path, out_dir, count: int = 50, seed: int = 0, sanitize: bool = False):
    """Compile, build and compare `count` random inputs plus the all-min and all-max ones
    with TFLite's reference kernels, and with TFLite Micro where it runs.

    Where the two references round differently (per-channel FULLY_CONNECTED), the model is
    compiled a second time with --reference tflm, and that build must equal TFLite Micro."""
    result = compile_model(model_path)
    write_files(result.files, out_dir)
    report = verify(model_path, result, out_dir, count=count, seed=seed, sanitize=sanitize)
    assert report.inputs == count + 2
    # Inputs on which TFLite's reference itself dies (an assertion in its SOFTMAX) have no
    # reference output; they may only be a small minority.
    assert report.tflite_aborted <= report.inputs // 4
    assert report.matched_tflite + report.tflite_aborted == report.inputs, report.first_mismatch
    if report.matched_tflm is not None and divergence_note(result.graph, "tflite"):
        tflm_build = compile_model(model_path, Options(reference="tflm"))
        write_files(tflm_build.files, out_dir)
        report = verify(model_path, tflm_build, out_dir, count=count, seed=seed, reference="tflm")
    if report.matched_tflm is not None:
        assert report.matched_tflm + report.tflm_aborted == report.inputs, "TFLite Micro disagrees"
    return result, report


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"
