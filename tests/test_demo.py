"""`mnv2gen demo` on the trained digits model, on part of its test set (the whole set and the
emulated Cortex-M4 are what the README's command runs; here the host is enough)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from mnv2gen.cli import main
from mnv2gen.presentation.demo import Progress, load_test_set


MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL = MODELS / "mobilenet_v2_035_96_digits.tflite"


@pytest.fixture(scope="module")
def few_tests(tmp_path_factory) -> Path:
    """The first 24 held-out images, so a test run takes seconds."""
    path = tmp_path_factory.mktemp("tests") / "few.npz"
    with np.load(MODELS / "digits_test.npz") as data:
        np.savez(path, x=data["x"][:24], y=data["y"][:24])
    return path


def _demo(tmp_path, few_tests, *flags) -> int:
    return main(["demo", "--model", str(MODEL), "--tests", str(few_tests), "--out", str(tmp_path),
                 "-n", "2", "--no-firmware", *flags])


def test_demo_json(tmp_path, few_tests, capsys):
    assert _demo(tmp_path, few_tests, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["host_matched"] == result["host_inputs"] == 4
    assert result["test_images"] == result["test_outputs_identical"] == 24
    assert result["c_accuracy"] == result["tflite_accuracy"] > 0.9
    assert result["arena_bytes"] < result["paper_bound_bytes"]
    assert result["sizes"]["weights_bytes"] > 100_000 and result["sizes"]["code_bytes"] > 0
    assert (tmp_path / "host" / "mnv2_model.c").exists()


def test_demo_quiet_prints_nothing(tmp_path, few_tests, capsys):
    assert _demo(tmp_path, few_tests, "--quiet") == 0
    assert capsys.readouterr() == ("", "")


def test_demo_without_its_model_is_a_user_error(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "none.tflite")]) == 2
    assert "the demo model is missing" in capsys.readouterr().err


def test_test_set_fills_every_channel():
    images, labels = load_test_set(MODELS / "digits_test.npz", (1, 96, 96, 3))
    assert images.shape == (len(labels), 1, 96, 96, 3) and images.dtype == np.int8
    assert (images[..., 0] == images[..., 2]).all() and set(labels) == set(range(10))


def test_progress_without_a_terminal_prints_plain_lines():
    stream = io.StringIO()
    with Progress(True, stream).stage("working") as progress:
        progress.update("1/2")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "working ..." and lines[1].startswith("working ... done in ")
    assert "\r" not in stream.getvalue()
