"""`verify` and `run` take compile's placement flags (--weights-section, --arena-section,
--arena external): the host harness and the firmware harnesses hand an external arena over,
and the firmware's linker script maps the named sections into the board's flash and zeroed
RAM, as a user's would. Bit-exact either way."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tools
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.firmware.build import build_firmware, symbol_table
from test_firmware import TOOLS, model_path

FLAGSHIP = Path(__file__).resolve().parent.parent / "models" / "mobilenet_v2_035_96.tflite"
SMALL = "mnv1_a025_96_c10"


def cli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "mnv2gen.cli", *args, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout)


def test_verify_takes_the_placement_flags(tmp_path):
    summary = cli("verify", str(FLAGSHIP), "-n", "2", "--no-tflm", "--out", str(tmp_path),
                  "--arena", "external", "--weights-section", ".mnv2_qspi")
    assert summary["bit_exact"] and summary["matched_tflite"] == summary["inputs"] == 4
    # The C verified is the placed one.
    assert "mnv2_set_arena" in (tmp_path / "mnv2_model.h").read_text()
    assert '__attribute__((section(".mnv2_qspi")))' in (tmp_path / "mnv2_weights.c").read_text()


@pytest.mark.parametrize("flags", [["--arena", "external", "--weights-section", ".mnv2_qspi"],
                                   ["--arena-section", ".mnv2_ccm"]])
def test_run_takes_the_placement_flags(flags, tmp_path):
    require_tools(*TOOLS)
    summary = cli("run", str(model_path(SMALL)), "--board", "mps2-an386", "-n", "1", "--no-layers",
                  "--out", str(tmp_path), *flags)
    assert summary["bit_exact"] is True and summary["matched_reference"] == 3


def section_ranges(elf: Path) -> dict[str, range]:
    headers = subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True, text=True,
                             check=True).stdout
    return {name: range(int(vma, 16), int(vma, 16) + int(size, 16))
            for name, size, vma in re.findall(r"^\s*\d+\s+(\S+)\s+([0-9a-f]{8})\s+([0-9a-f]{8})", headers, re.M)}


@pytest.mark.parametrize("placement", [dict(weights_section=".mnv2_qspi", arena_section=".mnv2_ccm"),
                                       dict(weights_section=".mnv2_qspi", arena="external")])
def test_the_placed_sections_land_in_flash_and_zeroed_ram(placement, tmp_path):
    require_tools(*TOOLS, "arm-none-eabi-objdump")
    options = Options(target="cortex-m4", **placement)
    result = compile_model(model_path(SMALL), options)
    write_files(result.files, tmp_path / "c")
    firmware = build_firmware(tmp_path / "c", "mnv2", BOARDS["mps2-an386"], tmp_path / "fw", options=options)
    sections = section_ranges(firmware.elf)
    assert ".mnv2_qspi" not in sections and ".mnv2_ccm" not in sections  # no orphan: mapped by name
    weights = [name for name in symbol_table(firmware.weights_object) if name in firmware.symbols]
    assert weights and all(firmware.symbol_address(name) in sections[".rodata"] for name in weights)
    # The static arena, or the harness's buffer for an external one, among the RAM start-up zeroes.
    arena = "mnv2_arena" if "arena_section" in placement else "arena_buffer"
    assert firmware.symbol_address(arena) in sections[".bss"]
