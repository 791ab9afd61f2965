"""The flashable STM32 image: `run --board netduinoplus2` builds for the STM32F405's real
memory map, links the inputs into the image, reads the outputs from its USART1 under QEMU,
and proves them bit-exact; the .elf, .bin and .hex it ran are kept with --out."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import model_zoo
from conftest import require_tools
from mnv2gen.cli import main
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.firmware.build import symbol_table
from mnv2gen.verification.board import run_on_board

BOARD = BOARDS["netduinoplus2"]
DIGITS = "mnv2gen/demo_data/mobilenet_v2_035_96_digits.tflite"


@pytest.fixture(autouse=True)
def tools():
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")


def test_digits_model_is_bit_exact_on_the_stm32_usart(tmp_path):
    path = Path(__file__).resolve().parent.parent / DIGITS
    result = compile_model(path, Options(target=BOARD.core))
    write_files(result.files, tmp_path / "c")
    report = run_on_board(path, result, tmp_path / "c", BOARD, count=2, image_dir=tmp_path / "image")
    assert report.bit_exact and report.inputs == 4
    assert report.instructions_per_inference > 1_000_000 and report.layers
    elf, binary, hex_file = report.images
    # The chip's memory map: code and constants in flash at 0x08000000, the arena in SRAM.
    symbols = symbol_table(elf)
    assert 0x08000000 <= symbols["mnv2_run"][0] < 0x08100000
    assert 0x20000000 <= symbols["mnv2_arena"][0] < 0x20020000
    # The .bin is the flash from 0x08000000 to the end of the last section loaded there: the
    # sections' bytes, and only the alignment padding between them.
    loaded = [(int(lma, 16), int(size, 16)) for size, lma in re.findall(
        r"^\s*\d+\s+\.(?:vectors|text|rodata|data)\s+([0-9a-f]{8})\s+[0-9a-f]{8}\s+([0-9a-f]{8})",
        subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True, text=True,
                       check=True).stdout, re.M)]
    assert len(loaded) == 4
    assert binary.stat().st_size == max(lma + size for lma, size in loaded if size) - 0x08000000
    assert 0 <= binary.stat().st_size - report.sizes["flash_bytes"] < 8 * len(loaded)
    assert hex_file.read_text().startswith(":")


def test_flagship_sibling_cli_run_keeps_the_image_and_prints_the_flash_command(tmp_path, capsys):
    model = str(model_zoo.get_model("mnv2_a035_96_c10"))
    out = tmp_path / "out"
    assert main(["run", model, "--board", "netduinoplus2", "-n", "4", "--no-layers", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "6/6 outputs identical" in text and "bit-exact" in text
    assert f"st-flash --reset write {out}/mnv2_netduinoplus2.bin 0x08000000" in text
    # Run again into the same folder: the images are ours, so they may be replaced.
    assert main(["run", model, "--board", "netduinoplus2", "-n", "1", "--no-layers", "--out", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bit_exact"] and len(summary["images"]) == 3


def test_a_foreign_file_where_the_image_goes_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mnv2_netduinoplus2.elf").write_text("my notes")
    code = main(["run", str(model_zoo.get_model("mnv2_a035_96_c10")), "--board", "netduinoplus2",
                 "--out", str(out)])
    assert code == 2 and "not written by mnv2gen" in capsys.readouterr().err
