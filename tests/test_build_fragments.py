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
from mnv2gen.targets import cpu_flags, gcc_for

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


EXAMPLE_CPP = ROOT / "examples" / "firmware_cpp"


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m55"])
def test_every_header_compiles_as_cpp_with_c_linkage(target, tmp_path):
    """C++ programs (Arduino sketches, Mbed, Zephyr C++ apps) include the generated headers:
    each must be valid C++, and a call from C++ must reach the C symbol, not a mangled one."""
    compiler = gcc_for(target, cpp=True)
    nm = compiler.replace("g++", "nm")
    assert shutil.which(compiler), f"{compiler} is not installed (tools/setup.sh installs it)"
    write_files(compile_model(MODEL, Options(target=target)).files, tmp_path)
    headers = sorted(tmp_path.glob("*.h"))
    assert len(headers) == 3
    source = tmp_path / "app.cpp"
    source.write_text("".join(f'#include "{h.name}"\n' for h in headers)
                      + "int app() { return mnv2_run() + (mnv2_input() != 0) + (mnv2_output() != 0); }\n")
    subprocess.run([compiler, *cpu_flags(target), "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-c", "-I", str(tmp_path), str(source), "-o", str(tmp_path / "app.o")], check=True)
    undefined = subprocess.run([nm, "-u", str(tmp_path / "app.o")], check=True, capture_output=True,
                               text=True).stdout.split()
    assert {"mnv2_run", "mnv2_input", "mnv2_output"} <= set(undefined), undefined


def test_cpp_example_links_the_c_model_and_runs(generated, tmp_path):
    folder = tmp_path / "firmware_cpp"
    shutil.copytree(EXAMPLE_CPP, folder, ignore=shutil.ignore_patterns("model", "build"))
    write_files(generated, folder / "model")
    output = _build_and_run(folder, [["cmake", "-S", ".", "-B", "build"], ["cmake", "--build", "build"]],
                            folder / "build" / "app")
    assert output.startswith("class 1, probability"), output


def test_cmake_fragment_follows_the_core_of_regenerated_c(tmp_path):
    """A build folder configured for C generated for one core, reconfigured after the C was
    generated again for another, must take the new core's flags (a cache entry kept the old)."""
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(probe C)\ninclude(model/mnv2_model.cmake)\n"
        'message(STATUS "target=${MNV2_TARGET} flags=${MNV2_CPU_FLAGS}")\n')
    seen = []
    for target in ("cortex-m4", "cortex-m55"):
        write_files(compile_model(MODEL, Options(target=target)).files, tmp_path / "model")
        configured = subprocess.run(["cmake", "-S", ".", "-B", "build"], cwd=tmp_path, check=True,
                                    capture_output=True, text=True)
        seen.append(re.search(r"target=(\S+) flags=(.*)", configured.stdout).groups())
    assert seen[0] == ("cortex-m4", ";".join(cpu_flags("cortex-m4")))
    assert seen[1] == ("cortex-m55", ";".join(cpu_flags("cortex-m55")))
