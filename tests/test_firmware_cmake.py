"""examples/firmware_cmake: Cortex-M firmware built with CMake and a toolchain file for the
GNU Arm compilers, through the generated CMake fragment: a C program and an Arduino-style C++
sketch (setup()/loop(), built with arm-none-eabi-g++ against the generated headers), each run
under QEMU on the Cortex-M4 board and bit-exact against TFLite for the input it draws."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tools
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.build import firmware_dir
from mnv2gen.verification import oracle

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "mobilenet_v2_035_96_digits.tflite"
EXAMPLE = ROOT / "examples" / "firmware_cmake"


def drawn_input() -> np.ndarray:
    """The image main.c and sketch.cpp draw: a white vertical stroke (a "1") on black."""
    image = np.full((96, 96, 3), -128, dtype=np.int8)
    image[16:96 - 16, 96 // 2 - 6:96 // 2 + 6, :] = 127
    return image


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    require_tools("cmake", "arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm")
    folder = tmp_path_factory.mktemp("firmware_cmake")
    for source in EXAMPLE.iterdir():
        shutil.copy(source, folder)
    write_files(compile_model(MODEL, Options(target="cortex-m4")).files, folder / "model")
    for command in (["cmake", "-S", ".", "-B", "build", "-DCMAKE_TOOLCHAIN_FILE=arm-none-eabi.cmake",
                     f"-DMNV2GEN_FIRMWARE={firmware_dir()}"],
                    ["cmake", "--build", "build", "-j", "2"]):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / "build"


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    run = oracle.reference_outputs(MODEL, drawn_input()[None], (10,), np.int8)
    assert run.ran.all()
    return run.outputs[0]


@pytest.mark.parametrize("image", ["firmware", "sketch"])
def test_example_firmware_runs_bit_exact_under_qemu(image, built, expected):
    done = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting-config",
                           "enable=on,target=native", "-kernel", str(built / f"{image}.elf")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    printed = re.search(r"^output:((?: \d+)+)$", console, re.M)
    assert printed, console
    ours = np.array(printed[1].split(), dtype=np.uint8).view(np.int8)
    assert ours.tobytes() == expected.tobytes(), (ours, expected)
    # The trained model sees the "1" the program drew.
    assert f"class {int(np.argmax(expected))}" in console and int(np.argmax(expected)) == 1


def test_the_sketch_is_cpp_built_by_the_arm_cxx_compiler(built):
    # What CMake found for the toolchain file's CMAKE_CXX_COMPILER.
    found = "".join(path.read_text() for path in built.glob("CMakeFiles/*/CMakeCXXCompiler.cmake"))
    assert re.search(r'^set\(CMAKE_CXX_COMPILER ".*/arm-none-eabi-g\+\+"\)$', found, re.M), found[:500]
    # Its object is C++: setup() and loop() have mangled names, the model's functions do not.
    symbols = subprocess.run(["arm-none-eabi-nm", str(built / "sketch.elf")], capture_output=True, text=True,
                             check=True).stdout
    assert "_Z5setupv" in symbols and "_Z4loopv" in symbols
    assert re.search(r" T mnv2_run$", symbols, re.M)
