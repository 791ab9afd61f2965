"""Every subcommand with hostile flag values: exit 0, 1 only after a real comparison, or 2
with one line; never a traceback (an exception here fails the test); no file touched outside
the command's outputs. Values a command accepts run for real, so the cheap ones are chosen."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from mnv2gen.cli import main


@pytest.fixture
def world(tmp_path):
    """A model, a user's own file, a read-only folder, and where the outputs may go."""
    model = tmp_path / "model.tflite"
    model.write_bytes(model_zoo.single_op_model("conv", 0).read_bytes())
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "readonly").mkdir()
    (tmp_path / "readonly").chmod(stat.S_IRUSR | stat.S_IXUSR)
    np.savez(tmp_path / "junk.npz", a=np.zeros(2))
    yield tmp_path
    (tmp_path / "readonly").chmod(stat.S_IRWXU)


def files(folder: Path, outputs: list[str]) -> dict[str, bytes]:
    """Every file outside the outputs, with its content."""
    result = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not any(relative == o or relative.startswith(o if o.endswith("_") else o + "/")
                                      for o in outputs):
            result[relative] = path.read_bytes()
    return result


PATHS = ["model.tflite", "notes.txt", "readonly", "readonly/x", "missing/deeper/x", "", "-", "."]
NUMBERS = ["-3", "0", "-0", "1e3", "99999999999999999999999", "", "nan", "0x10"]

CASES = (
    [("compile", ["--out", p]) for p in PATHS]
    + [("compile", ["--out", "out", "--prefix", v]) for v in ["", "A", "1a", "a" * 40, "a-b", "a b", "é"]]
    + [("compile", ["--out", "out", "--memory-budget", v]) for v in NUMBERS + ["1"]]
    + [("compile", ["--out", "out", "--target", v]) for v in ["", "cortex-m3", "HOST"]]
    + [("compile", ["--out", "out", "--optimize", v]) for v in ["", "fast", "0"]]
    + [("verify", ["--seed", v]) for v in NUMBERS]
    + [("verify", ["-n", v]) for v in NUMBERS]
    + [("verify", ["--target", v]) for v in ["cortex-m4", "cortex-m7", "cortex-m55"]]
    + [("verify", ["--out", p]) for p in ["model.tflite", "notes.txt", ""]]
    + [("run", ["--board", v]) for v in ["", "mps2-an385", "stm32"]]
    + [("run", ["--target", "cortex-m55"])]  # not the default board's core
    + [("run", ["-n", v]) for v in ["0", "-1", "10001"]]
    + [("report", ["--html", p]) for p in PATHS if p not in ("missing/deeper/x", "readonly/x")]
    + [("report", ["--png", p]) for p in ["model.tflite", "notes.txt", "readonly", "missing/x.png", ""]]
    + [("report", ["--memory-budget", v]) for v in ["0", "-1", "x"]]
    + [("demo", ["--tests", p]) for p in ["junk.npz", "model.tflite", "notes.txt", "readonly", "missing.npz"]]
    + [("demo", ["--model", p]) for p in ["notes.txt", "readonly", "missing.tflite", ""]]
    + [("demo", ["--out", p]) for p in ["model.tflite", "notes.txt"]]
    + [("demo", ["-n", v]) for v in ["0", "-5", "x"]]
)


def _argv(command: str, flags: list[str]) -> list[str]:
    if command == "demo":
        return ["demo", "--no-firmware", *flags]
    return [command, "model.tflite", *flags] + (["--no-tflm"] if command == "report" else [])


@pytest.mark.parametrize("command, flags", CASES, ids=[f"{c} {' '.join(f)}" for c, f in CASES])
def test_hostile_flag_values(world, monkeypatch, capsys, command, flags):
    monkeypatch.chdir(world)
    values = flags[1::2]
    outputs = ["out", "build"] + values + (["mnv2_"] if "." in values else [])
    before = files(world, outputs)
    code = main(_argv(command, flags))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.startswith("mnv2gen: error: ") and captured.err.count("\n") == 1, captured.err
    else:
        # Only an accepted value gets here: it worked, or outputs were compared (exit 1).
        assert code in (0, 1), (code, captured.err)
    assert files(world, outputs) == before, "a file outside the outputs changed"
