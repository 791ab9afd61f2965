"""Popular Cortex-M parts, with the flash and RAM regions a model must fit, for
`compile --board`: a fit check where no emulator runs the chip.

Region sizes are the vendors' datasheet figures for the part named. The model's RAM (the
arena, .data, .bss) must be one contiguous block, so `ram` is the largest contiguous SRAM
region; the stack reserve goes there too unless the part has a better place (`stack`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..targets import cpu_flags
from .build import C_FLAGS, section_sizes

KB = 1024
STACK_RESERVE = 8 * KB  # as sections.ld reserves, above the 1.4-3 KB one inference was measured to use
GUARD_BYTES = 8  # the tail guard words after a static arena (templates/model.c.j2)
# Without the Arm toolchain the code cannot be measured: this much is assumed (the generated
# kernels and model code measure 15-25 KB on the fixtures).
CODE_RESERVE = 64 * KB


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    size: int  # bytes


@dataclass(frozen=True)
class Chip:
    name: str  # what --board takes
    part: str  # the part number the sizes are of
    core: str
    target: str  # the --target compile uses for it by default (one of targets.TARGETS)
    flash: Region
    ram: Region  # where the arena goes: the largest contiguous RAM
    stack: Region | None = None  # where the stack goes, if not `ram`
    note: str = ""

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        """To measure the code with arm-none-eabi-gcc: the flags of the chip's core."""
        return cpu_flags(self.target)

    @property
    def description(self) -> str:
        return f"{self.part}, {self.core}" + (f"; {self.note}" if self.note else "")


CHIPS = {chip.name: chip for chip in [
    Chip("stm32f405", "STM32F405RG", "Cortex-M4F", "cortex-m4",
         Region("flash", 0x08000000, 1024 * KB), Region("SRAM1+SRAM2", 0x20000000, 128 * KB),
         stack=Region("CCM", 0x10000000, 64 * KB)),
    Chip("stm32f411", "STM32F411RE", "Cortex-M4F", "cortex-m4",
         Region("flash", 0x08000000, 512 * KB), Region("SRAM", 0x20000000, 128 * KB)),
    Chip("stm32f746", "STM32F746NG", "Cortex-M7", "cortex-m7",
         Region("flash", 0x08000000, 1024 * KB), Region("DTCM+SRAM1+SRAM2", 0x20000000, 320 * KB)),
    Chip("stm32h743", "STM32H743ZI", "Cortex-M7", "cortex-m7",
         Region("flash", 0x08000000, 2048 * KB), Region("AXI SRAM", 0x24000000, 512 * KB),
         stack=Region("DTCM", 0x20000000, 128 * KB), note="also SRAM1-3 288 KB, SRAM4 64 KB, ITCM 64 KB"),
    Chip("stm32l475", "STM32L475VG", "Cortex-M4F", "cortex-m4",
         Region("flash", 0x08000000, 1024 * KB), Region("SRAM1", 0x20000000, 96 * KB),
         stack=Region("SRAM2", 0x10000000, 32 * KB)),
    Chip("stm32u585", "STM32U585AI", "Cortex-M33", "cortex-m33",
         Region("flash", 0x08000000, 2048 * KB), Region("SRAM1+SRAM2+SRAM3", 0x20000000, 768 * KB),
         note="also SRAM4 16 KB"),
    Chip("nrf52840", "nRF52840", "Cortex-M4F", "cortex-m4",
         Region("flash", 0x00000000, 1024 * KB), Region("RAM", 0x20000000, 256 * KB)),
    Chip("nrf5340", "nRF5340 (application core)", "Cortex-M33", "cortex-m33",
         Region("flash", 0x00000000, 1024 * KB), Region("RAM", 0x20000000, 512 * KB)),
    Chip("rp2040", "RP2040 (Raspberry Pi Pico: 2 MB QSPI flash)", "Cortex-M0+", "cortex-m0plus",
         Region("QSPI flash (XIP)", 0x10000000, 2048 * KB), Region("SRAM0-5", 0x20000000, 264 * KB),
         note="the flash is the board's external chip"),
    Chip("ra8d1", "R7FA8D1BH (RA8D1)", "Cortex-M85", "cortex-m85",
         Region("code flash", 0x02000000, 2048 * KB), Region("SRAM", 0x22000000, 896 * KB),
         note="also 128 KB TCM"),
]}


def get_chip(name: str) -> Chip:
    try:
        return CHIPS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; known boards: {', '.join(CHIPS)}") from None


# The arrays weights.h declares: `extern const int8_t mnv2_layer0_s0_weights[432];`
_WEIGHTS_DECLARATION = re.compile(r"^extern const (\w+) \w+\[(\d+)\];$", re.MULTILINE)
_CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "uint32_t": 4, "float": 4}


def weights_bytes(files: dict[str, str], prefix: str) -> int:
    """The bytes of every constant array of the generated weights (exact, from their
    declarations: no toolchain needed)."""
    return sum(_CTYPE_BYTES[ctype] * int(count)
               for ctype, count in _WEIGHTS_DECLARATION.findall(files[f"{prefix}_weights.h"]))


def code_bytes(files: dict[str, str], prefix: str, chip: Chip) -> int | None:
    """.text + .rodata of the generated code (not the weights) compiled for the chip's core,
    or None without the Arm toolchain."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("arm-none-eabi-size") is None:
        return None
    total = 0
    with tempfile.TemporaryDirectory(prefix="mnv2gen-fit-") as tmp:
        folder = Path(tmp)
        for name, text in files.items():
            (folder / name).write_text(text)
        for source in (f"{prefix}_model.c", f"{prefix}_kernels.c"):
            obj = folder / f"{source}.o"
            command = ["arm-none-eabi-gcc", *chip.cpu_flags, *C_FLAGS, "-I", tmp, "-c", str(folder / source),
                       "-o", str(obj)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"fit-check build failed:\n{' '.join(command)}\n{result.stderr[-2000:]}")
            sizes = section_sizes(obj)
            total += sum(size for section, size in sizes.items() if section.startswith((".text", ".rodata")))
    return total


@dataclass(frozen=True)
class Need:
    """What one memory region must hold, item by item (name, bytes)."""
    region: Region
    items: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(size for _, size in self.items)

    @property
    def headroom(self) -> int:
        return self.region.size - self.total

    def text(self) -> str:
        parts = " + ".join(f"{name} {size:,}" for name, size in self.items)
        verdict = (f"headroom {self.headroom:,} ({100 * self.headroom / self.region.size:.0f}%)"
                   if self.headroom >= 0 else f"short by {-self.headroom:,}")
        return f"{self.region.name} {self.region.size:,} bytes: {parts} = {self.total:,}; {verdict}"


def fit_needs(chip: Chip, *, weights: int, code: int | None, arena: int, weights_placed: bool,
              arena_placed: bool) -> list[Need]:
    """What the chip's flash and RAM regions must hold for the model. Weights or an arena the
    user placed in a section of their own (--weights-section, --arena-section) are not counted
    against the chip's regions; the stack reserve is, in its region."""
    code_item = ("code", code) if code is not None else ("code (assumed; no Arm toolchain to measure)", CODE_RESERVE)
    flash = Need(chip.flash, (*((("weights", weights),) if not weights_placed else ()), code_item))
    arena_items = () if arena_placed else (("arena", arena), ("guard words", GUARD_BYTES))
    stack_item = ("stack reserve", STACK_RESERVE)
    if chip.stack is None:
        return [flash, Need(chip.ram, (*arena_items, stack_item))]
    return [flash, Need(chip.ram, arena_items), Need(chip.stack, (stack_item,))]


def check_fit(chip: Chip, needs: list[Need]) -> list[str]:
    """One line per region; a UserError with the numbers when any region is short."""
    short = [need for need in needs if need.headroom < 0]
    if short:
        raise UserError(f"the model does not fit {chip.name} ({chip.part}): "
                        + "; ".join(need.text() for need in short))
    return [f"fits {chip.name} ({chip.description}):"] + [f"  {need.text()}" for need in needs]
