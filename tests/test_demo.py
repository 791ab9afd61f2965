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


def test_demo_camera_streams_as_the_frame_api_and_the_reference(tmp_path, few_tests, capsys):
    """--camera: the streamed build fed the model's rows gives the frame API's outputs, one for
    one; fed a simulated RGB565 camera at 160x120, resized to 96x96 in the C, it gives TFLite's
    outputs on the Python reference's input for the same frames, byte for byte."""
    assert _demo(tmp_path, few_tests, "--json", "--camera") == 0
    result = json.loads(capsys.readouterr().out)
    camera = result["camera"]
    assert result["ok"] and camera["ok"]
    assert camera["rows_outputs_identical"] == camera["camera_outputs_identical"] == camera["images"] == 24
    assert camera["rows_accuracy"] == result["c_accuracy"]
    assert camera["camera_accuracy"] == camera["camera_reference_accuracy"] > 0.9
    assert camera["macs_rows"] == camera["macs_frame"] > 10_000_000
    assert camera["rows_arena_bytes"] < camera["camera_arena_bytes"] < result["arena_bytes"]
    assert "#define MNV2_INPUT_ROWS 120" in (tmp_path / "camera" / "mnv2_model.h").read_text()


def test_the_simulated_camera_delivers_rgb565_grey():
    from mnv2gen.presentation.camera import camera_frames

    images = np.stack([np.full((96, 96, 1), q, np.int8) for q in (127, -128, 0)])
    frames = camera_frames(images)
    assert frames.shape == (3, 120, 160, 2) and frames.dtype == np.uint8
    words = frames.view("<u2")[..., 0]
    assert (words[0] == 0xFFFF).all() and (words[1] == 0).all()
    assert (words[2] == (128 >> 3) << 11 | (128 >> 2) << 5 | 128 >> 3).all()  # grey 128
