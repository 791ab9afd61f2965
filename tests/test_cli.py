"""The command line: clear errors with exit code 2, determinism, prefixes, no TensorFlow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import model_zoo
from mnv2gen.cli import main

FLAGSHIP = "mnv2_a035_96_c1000"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # Run from a neutral folder so the installed package is used, as a user would.
    return subprocess.run([sys.executable, "-m", "mnv2gen.cli", *args], capture_output=True, text=True,
                          cwd=cwd or Path(__file__).parent)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("mnv2gen: error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_file(tmp_path):
    assert_user_error(run_cli("compile", str(tmp_path / "nope.tflite"), "--out", str(tmp_path)),
                      "nope.tflite", "no such file")


def test_not_a_tflite_file(tmp_path):
    bogus = tmp_path / "model.tflite"
    bogus.write_text("this is not a model, just some text that is long enough")
    assert_user_error(run_cli("compile", str(bogus), "--out", str(tmp_path / "o")), "TFL3")


@pytest.mark.parametrize("keep", [8, 100, 5000, 60000])
def test_truncated_model(tmp_path, keep):
    data = model_zoo.get_model(FLAGSHIP).read_bytes()[:keep]
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(data)
    assert_user_error(run_cli("compile", str(truncated), "--out", str(tmp_path / "o")), "truncated.tflite")


def test_unsupported_op_is_named_with_its_index(tmp_path):
    result = run_cli("compile", str(model_zoo.get_model("unsupported_maxpool")), "--out", str(tmp_path))
    assert_user_error(result, "MAX_POOL_2D", "op ", "Supported ops:", "CONV_2D")


def test_bad_prefix_is_a_usage_error(tmp_path):
    result = run_cli("compile", str(model_zoo.get_model(FLAGSHIP)), "--out", str(tmp_path),
                     "--prefix", "bad name; int x")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "prefix" in result.stderr


def test_compile_never_imports_tensorflow(tmp_path):
    code = (
        "import sys; from mnv2gen.cli import main; "
        f"rc = main(['compile', {str(model_zoo.get_model(FLAGSHIP))!r}, '--out', {str(tmp_path)!r}, '--quiet']); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_output_is_byte_identical_across_runs(tmp_path):
    # The same command twice (the banner records the command, --out included).
    model, out = str(model_zoo.get_model(FLAGSHIP)), tmp_path / "out"
    runs = []
    for _ in range(2):
        assert main(["compile", model, "--out", str(out), "--quiet"]) == 0
        runs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) >= 6
    for name in runs[0]:
        assert runs[0][name] == runs[1][name], name


def test_prefix_renames_every_public_symbol(tmp_path):
    model = model_zoo.get_model("mnv2_a035_96_c10")
    out = tmp_path / "out"
    assert main(["compile", str(model), "--out", str(out), "--prefix", "kws", "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names and all(n.startswith("kws_") for n in names)
    for path in out.glob("*.[ch]"):  # (the build files' prefixes: tests/test_build_fragments.py)
        text = path.read_text().split("*/", 1)[1]  # past the banner, which names the model file
        assert not re.search(r"\bmnv2_|\bMNV2_", text), f"{path.name} still uses the default prefix"
    assert "KWS_ARENA_BYTES" in (out / "kws_model.h").read_text()
    from mnv2gen.compiler import compile_model
    from mnv2gen.codegen.render import Options
    from mnv2gen.verification.host import verify

    result = compile_model(model, Options(prefix="kws"))
    report = verify(model, result, out, count=3, prefix="kws", use_tflm=False)
    assert report.matched_tflite == report.inputs


def test_verify_command_reports_and_exits_zero(tmp_path):
    result = run_cli("verify", str(model_zoo.get_model("mnv2_a035_96_c10")), "--out", str(tmp_path), "-n", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 outputs identical" in result.stdout
    assert "arena:" in result.stdout and "bit-exact" in result.stdout


def test_compile_json_output(tmp_path):
    import json

    result = run_cli("compile", str(model_zoo.get_model("mnv2_a035_96_c10")), "--out", str(tmp_path), "--json")
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["arena_bytes"] > 0 and "mnv2_model.c" in summary["files"]


def test_verify_names_the_first_layer_that_differs(tmp_path):
    """Sabotage one bias of step 5; verify must fail and point at step 5, not later."""
    import re as regex

    from mnv2gen.compiler import compile_model as compile_
    from mnv2gen.compiler import write_files as write
    from mnv2gen.verification.host import verify as verify_

    model = model_zoo.get_model("mnv2_a035_96_c10")
    result = compile_(model)
    write(result.files, tmp_path)
    weights = tmp_path / "mnv2_weights.c"
    text = weights.read_text()
    start = text.index("mnv2_layer5_s0_bias[")
    body = text.index("{", start) + 1
    first_value = regex.match(r"\s*(-?\d+)", text[body:])
    corrupted = str(int(first_value.group(1)) + 100000)
    weights.write_text(text[:body] + text[body:].replace(first_value.group(1), corrupted, 1))
    report = verify_(model, result, tmp_path, count=2, use_tflm=False)
    assert report.matched_tflite < report.inputs
    assert report.first_mismatch.startswith("layer 5 "), report.first_mismatch
