"""Issue 17, a user's first hour: no false verdict, no lost file, every mistake answered in
one line (exit 2), and the models users bring refused with a sentence that helps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_zoo
from conftest import require_tools
import tflite_edit
from mnv2gen.cli import main

SMALL = "mnv2_a035_96_c10"
SHADOW = 'raise ImportError("simulated: this package is not installed")\n'


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mnv2gen: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- 1. no oracle: exit 2, not MISMATCH


def test_verify_without_an_oracle_is_exit_2_with_the_install_hint(tmp_path):
    """The interpreter's packages present but failing to import (as after `pip install .`
    without the extras): the error raised in the oracle's subprocess reaches the user."""
    for package in ("ai_edge_litert", "tensorflow"):
        (tmp_path / "shadow" / package).mkdir(parents=True)
        (tmp_path / "shadow" / package / "__init__.py").write_text(SHADOW)
    env = {**__import__("os").environ}
    env["PYTHONPATH"] = f"{tmp_path / 'shadow'}:{env.get('PYTHONPATH', '')}"
    result = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "verify", str(model_zoo.get_model(SMALL)),
                             "-n", "2", "--no-tflm", "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "MISMATCH" not in result.stdout
    assert json.loads(result.stdout) == {"ok": False, "exit_code": 2, "error": json.loads(result.stdout)["error"]}
    assert "pip install" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize("command", ["verify", "run"])
def test_missing_oracle_is_refused_before_any_work(command, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("ai_edge_litert", "tensorflow") else real(name, *a))
    monkeypatch.setattr("mnv2gen.compiler.compile_model", lambda *a, **k: pytest.fail("compiled"))
    assert main([command, str(model_zoo.get_model(SMALL)), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "pip install")


def test_a_reference_that_cannot_run_anything_is_not_a_mismatch(tmp_path, capsys, monkeypatch):
    from mnv2gen.verification import oracle

    def all_aborted(model_path, inputs, shape, dtype):
        return oracle.ReferenceRun(np.zeros((len(inputs), *shape), dtype), np.zeros(len(inputs), bool))

    monkeypatch.setattr(oracle, "reference_outputs", all_aborted)
    assert main(["verify", str(model_zoo.get_model(SMALL)), "-n", "2", "--no-tflm"]) == 2
    one_line_error(capsys, "aborted on every input")


# ---------------------------------------------------------------- 2. never over an input


def test_report_never_writes_over_its_model(capsys):
    model = model_zoo.get_model(SMALL)
    before = model.read_bytes()
    assert main(["report", str(model), "--no-tflm", "--html", str(model)]) == 2
    one_line_error(capsys, "--html is the input itself")
    assert model.read_bytes() == before


@pytest.mark.parametrize("flag", ["--html", "--png"])
def test_report_outputs_into_a_missing_folder_fail_before_any_work(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mnv2gen.presentation.memory.memory_report", lambda *a, **k: pytest.fail("worked"))
    assert main(["report", str(model_zoo.get_model(SMALL)), flag, str(tmp_path / "no" / "r.x")]) == 2
    one_line_error(capsys, "does not exist")


def test_report_keeps_a_file_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    assert main(["report", str(model_zoo.get_model(SMALL)), "--no-tflm", "--html", str(mine)]) == 2
    one_line_error(capsys, "not written by mnv2gen")
    assert mine.read_text() == "<p>my notes</p>"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    model = model_zoo.get_model(SMALL)
    assert main(["compile", str(model), "--out", str(model)]) == 2
    one_line_error(capsys, "--out must be a folder")


def test_out_keeps_a_users_file_of_a_generated_name(tmp_path, capsys):
    (tmp_path / "mnv2_model.c").write_text("int my_own_code;\n")
    assert main(["compile", str(model_zoo.get_model(SMALL)), "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "not written by mnv2gen")
    assert (tmp_path / "mnv2_model.c").read_text() == "int my_own_code;\n"


def test_the_model_itself_under_a_generated_name_is_refused(tmp_path, capsys):
    model = tmp_path / "mnv2_README.md"
    shutil.copy(model_zoo.get_model(SMALL), model)
    assert main(["compile", str(model), "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "would overwrite the input")


# ---------------------------------------------------------------- 3. every flag value works or is refused


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_verify_refuses_cortex_m_targets_with_the_run_command_to_use(target, capsys):
    assert main(["verify", str(model_zoo.get_model(SMALL)), "--target", target]) == 2
    one_line_error(capsys, f"--target {target}", "mnv2gen run", "--board")


@pytest.mark.parametrize("flags", [["--seed", "-3"], ["-n", "0"], ["-n", "100001"], ["--memory-budget", "0"],
                                   ["--prefix", "Bad"], ["--target", "risc-v"]])
def test_bad_flag_values_are_one_line_and_json_with_json(flags, capsys):
    assert main(["verify", str(model_zoo.get_model(SMALL)), "--json", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "usage:" not in captured.err
    result = json.loads(captured.out)
    assert result["ok"] is False and result["exit_code"] == 2 and flags[0] in result["error"]


def test_prefix_error_says_what_is_allowed(capsys):
    assert main(["compile", str(model_zoo.get_model(SMALL)), "--out", "x", "--prefix", "My-Net"]) == 2
    one_line_error(capsys, "lowercase C identifier")


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_demo_with_a_bad_test_set_is_a_user_error(content, tmp_path, capsys):
    tests = tmp_path / "bad.npz"
    if content is None:
        np.savez(tests, images=np.zeros(3))  # an .npz without x and y
    else:
        tests.write_bytes(content)
    from mnv2gen.presentation.demo import load_test_set
    from mnv2gen.errors import UserError

    with pytest.raises(UserError, match="not a test set"):
        load_test_set(tests, (1, 96, 96, 3))


# ---------------------------------------------------------------- 4. a model that ignores its input


def test_verify_warns_when_every_output_is_the_same(tmp_path, capsys):
    model = tflite_edit.load(model_zoo.single_op_model("conv", 0))
    op = model.graph.operators[0]
    weights = model.graph.tensors[op.inputs[1]]
    model.buffers[weights.buffer] = bytes(len(model.buffers[weights.buffer]))  # all zero: output = bias
    path = tflite_edit.save(model, tmp_path / "dead.tflite")
    assert main(["verify", str(path), "-n", "4", "--no-tflm", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bit_exact"] and result["distinct_outputs"] == 1
    assert "same output" in result["warnings"][0]


# ---------------------------------------------------------------- 5, 6. models users bring


def test_every_unsupported_op_of_a_mobilenet_v3_is_named(tmp_path, capsys):
    assert main(["compile", str(model_zoo.get_model("mnv3_small_a075_96")), "--out", str(tmp_path)]) == 2
    # Its 10 MULs by a constant (the input's Rescaling, hard-swish's 1/6) are supported; the 9
    # squeeze-excite MULs of two activations are named with the rest.
    one_line_error(capsys, "HARD_SWISH x19 (first: op ", "MUL x9 (first: op 9)", "MUL (by a constant)",
                   "Supported ops:")


@pytest.mark.parametrize("mode, kind", [("float", "a float model"),
                                        ("dynamic_range", "a dynamic-range quantized model"),
                                        ("float16", "a float16-quantized model"),
                                        ("int16x8", "a 16x8-quantized model")])
def test_a_model_that_is_not_fully_int8_is_named_with_what_to_do(mode, kind, tmp_path, capsys):
    assert main(["compile", str(model_zoo.get_model(f"not_int8_{mode}")), "--out", str(tmp_path)]) == 2
    err = one_line_error(capsys, "is not fully int8", kind, "TFLITE_BUILTINS_INT8", "representative dataset")
    assert "supported: float32" not in err


# ---------------------------------------------------------------- 8. defaults a user expects


def test_demo_runs_from_any_folder(tmp_path, monkeypatch, capsys):
    few = tmp_path / "few.npz"
    from mnv2gen.presentation.demo import DEFAULT_MODEL

    with np.load(DEFAULT_MODEL.parent / "digits_test.npz") as data:
        np.savez(few, x=data["x"][:4], y=data["y"][:4])
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--tests", str(few), "--out", "demo", "-n", "1", "--no-firmware", "--quiet"]) == 0
    assert (tmp_path / "demo" / "host" / "mnv2_model.c").exists()


def test_run_needs_no_out_folder(capsys):
    require_tools("qemu-system-arm", "arm-none-eabi-gcc")
    assert main(["run", str(model_zoo.single_op_model("conv", 0)), "-n", "1", "--no-layers", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bit_exact"] and result["out"] is None


# ---------------------------------------------------------------- 9. same files wherever compiled


def test_output_does_not_depend_on_the_folder_or_the_flags_that_do_not_change_the_c(tmp_path, monkeypatch):
    model = str(model_zoo.get_model(SMALL))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert main(["compile", model, "--out", "out", "--quiet"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert main(["compile", model, "--out", str(tmp_path / "b" / "deep" / "out"), "--json"]) == 0
    assert snapshot(tmp_path / "a" / "out").values() and \
        list(snapshot(tmp_path / "a" / "out").values()) == list(snapshot(tmp_path / "b" / "deep" / "out").values())


# ---------------------------------------------------------------- 10, 11. the C in a user's build


@pytest.mark.parametrize("source", ["mnv2_model.c", "mnv2_kernels.c"])
def test_cortex_m4_c_built_for_a_cortex_m3_stops_at_a_clear_error(tmp_path, source):
    require_tools("arm-none-eabi-gcc")
    assert main(["compile", str(model_zoo.single_op_model("conv", 0)), "--out", str(tmp_path),
                 "--target", "cortex-m4", "--quiet"]) == 0
    result = subprocess.run(["arm-none-eabi-gcc", "-mthumb", "-mcpu=cortex-m3", "-std=c99", "-c",
                             str(tmp_path / source), "-o", str(tmp_path / "m.o")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "--target cortex-m4" in result.stderr
    first_error = next(line for line in result.stderr.splitlines() if "error" in line)
    assert "#error" in first_error, result.stderr[-2000:]


UNITY_TARGETS = ("host", "cortex-m4", "cortex-m55")


def _unity_build(tmp_path, names: list[str], target: str = "host", models=None,
                 quantized_input: bool = False) -> subprocess.CompletedProcess:
    """Two different models (different shapes, so their model-dependent constants differ),
    each under its own prefix, with the files `names` of both #included into one C file. Their
    kernels.c hold every row kernel of the variant, not only the model's, so every private
    name is defined twice."""
    from mnv2gen.codegen.render import Options
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.targets import C_WARNINGS, cpu_flags, gcc_for

    models = models or (model_zoo.get_model(SMALL), model_zoo.get_model("mnv2_a035_96_c1000"))
    for prefix, model in zip(("first", "second"), models):
        options = Options(prefix=prefix, target=target, every_kernel=True, quantized_input=quantized_input)
        write_files(compile_model(model, options).files, tmp_path)
    unity = tmp_path / "unity.c"
    unity.write_text("".join(f'#include "{prefix}_{name}.c"\n' for prefix in ("first", "second") for name in names))
    return subprocess.run([gcc_for(target), *cpu_flags(target), *C_WARNINGS, "-O1", "-c", str(unity),
                           "-I", str(tmp_path), "-o", str(tmp_path / "unity.o")], capture_output=True, text=True)


def test_two_models_model_and_weights_in_one_translation_unit(tmp_path):
    result = _unity_build(tmp_path, ["model", "weights"])
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("target", UNITY_TARGETS)
def test_two_models_whole_c_in_one_translation_unit(tmp_path, target):
    """Every kernel variant's private names take the prefix (templates/ref/private_names.j2)."""
    result = _unity_build(tmp_path, ["model", "weights", "kernels"], target)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("target", (*UNITY_TARGETS, "cortex-m0plus"))
def test_two_onnx_models_whole_c_in_one_translation_unit(tmp_path, target):
    """Likewise with ONNX Runtime's arithmetic: its output stages (the integer one without an
    FPU, which takes the quantized input), ADD and helpers (ort_*)."""
    import onnx_zoo

    models = (onnx_zoo.single_op("conv", "uint8"), onnx_zoo.single_op("depthwise", "int8"))
    result = _unity_build(tmp_path, ["model", "weights", "kernels"], target, models,
                          quantized_input=target == "cortex-m0plus")
    assert result.returncode == 0, result.stderr[-3000:]


# ---------------------------------------------------------------- 12. what the commands say


def test_compile_counts_ops_and_steps(tmp_path, capsys):
    assert main(["compile", str(model_zoo.get_model(SMALL)), "--out", str(tmp_path)]) == 0
    assert "65 ops in 21 steps" in capsys.readouterr().out


def test_report_explains_live_bytes_above_the_arena(capsys):
    assert main(["report", str(model_zoo.get_model(SMALL)), "--no-tflm"]) == 0
    out = capsys.readouterr().out
    assert "over the arena" in out and "written over" in out


def test_help_describes_every_command_and_runs_target(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("compile", "verify", "run", "report", "demo"):
        assert f"    {command} " in top
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "default: host" not in capsys.readouterr().out


# ---------------------------------------------------------------- 7. TFLite Micro's person_detect defect


def person_detect_like(tmp_path) -> Path:
    """The defect of TFLite Micro's example person_detect.tflite: a conv's int32 bias with
    per-channel scales on an axis out of range for a 1-D tensor."""
    model = tflite_edit.load(model_zoo.single_op_model("conv", 0))
    bias = model.graph.tensors[model.graph.operators[0].inputs[2]]
    assert len(bias.quant.scale) > 1 and len(bias.shape) == 1
    bias.quant.axis = 3
    return tflite_edit.save(model, tmp_path / "person_detect_like.tflite")


def test_bias_axis_out_of_range_names_the_flag_that_accepts_it(tmp_path, capsys):
    assert main(["compile", str(person_detect_like(tmp_path)), "--out", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "a bias", "axis 3", "--reference tflm", "TFLite refuses")


def test_bias_axis_out_of_range_is_bit_exact_with_tflite_micro(tmp_path, capsys):
    model = person_detect_like(tmp_path)
    assert main(["verify", str(model), "--reference", "tflm", "-n", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bit_exact"] and result["matched_tflm"] == result["inputs"] == 8
