"""The build files beside the generated C: the Makefile and CMake fragments, the API README,
and the example firmware that uses the Makefile fragment, built and run on the host."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "mobilenet_v2_035_96_digits.tflite"
EXAMPLE = ROOT / "examples" / "firmware_make"


@pytest.fixture(scope="module")
def generated():
    return compile_model(MODEL).files


def test_fragments_list_every_generated_source(generated):
    sources = sorted(name for name in generated if name.endswith(".c"))
    make = generated["mnv2_model.mk"]
    assert re.search(r"^MNV2_SOURCES :=(.*)$", make, re.M).group(1).split() == \
        [f"$(MNV2_DIR)/{name}" for name in sources]
    assert re.findall(r'"\$\{MNV2_DIR\}/(\w+\.c)"', generated["mnv2_model.cmake"]) == sources
    assert "MNV2_TARGET ?= host" in make and "mnv2_run(void)" in generated["mnv2_README.md"]


def test_prefix_renames_files_and_variables():
    files = compile_model(MODEL, Options(prefix="kws", target="cortex-m4")).files
    assert {"kws_model.cmake", "kws_model.mk", "kws_README.md"} <= set(files)
    for name in ("kws_model.cmake", "kws_model.mk", "kws_README.md"):
        # Only the banner may say "mnv2gen"; every symbol and variable uses the prefix.
        assert not re.search(r"\bmnv2_|\bMNV2_", files[name]), name
    assert "KWS_TARGET ?= cortex-m4" in files["kws_model.mk"]
    assert "add_library(kws_model STATIC ${KWS_SOURCES})" in files["kws_model.cmake"]


def _build_and_run(folder: Path, build: list[list[str]], binary: Path) -> str:
    for command in build:
        subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True, timeout=300)
    return subprocess.run([str(binary)], check=True, capture_output=True, text=True, timeout=60).stdout


def test_example_firmware_builds_with_make_and_runs(generated, tmp_path):
    folder = tmp_path / "firmware_make"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("model", "firmware", "*.o"))
    write_files(generated, folder / "model")  # as `make` would have mnv2gen do
    output = _build_and_run(folder, [["make", "-s"]], folder / "firmware")
    # The example draws a "1"; the trained model must see it.
    assert output.startswith("class 1, probability"), output


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_fragment_builds_a_program(generated, tmp_path):
    write_files(generated, tmp_path / "model")
    shutil.copy(EXAMPLE / "main.c", tmp_path)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(demo C)\n"
        "include(model/mnv2_model.cmake)\nadd_executable(app main.c)\n"
        "target_link_libraries(app PRIVATE mnv2_model)\n")
    output = _build_and_run(tmp_path, [["cmake", "-S", ".", "-B", "build"], ["cmake", "--build", "build"]],
                            tmp_path / "build" / "app")
    assert output.startswith("class 1, probability"), output
