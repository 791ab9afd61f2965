"""The boards mnv2gen builds firmware for: core, compiler flags, linker script, emulator."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import UserError
from ..targets import cpu_flags


class Console(StrEnum):
    """How the firmware gets its inputs and reports its outputs."""
    # Through the debugger (QEMU's MPS boards): inputs and outputs are host files.
    SEMIHOSTING = "semihosting"
    # On the chip's own USART, the inputs linked into the image: a flashable image.
    USART = "usart"


@dataclass(frozen=True)
class Board:
    name: str
    core: str  # one of targets.CORE_FLAGS, and the `--target` of the generated C
    description: str
    machine: str | None = None  # QEMU's -M; None: no emulator, the build only checks the fit
    console: Console = Console.SEMIHOSTING
    pyocd_target: str | None = None  # the chip's name for pyOCD, on boards people flash
    # Set when the emulated core is not `core` but runs its code (a superset of its
    # instructions): what the figures measure, said wherever they are printed.
    stand_in: str | None = None

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        return cpu_flags(self.core)

    @property
    def linker_script(self) -> str:
        return f"{self.name}.ld"

    @property
    def runnable(self) -> bool:
        return self.machine is not None

    @property
    def flashable(self) -> bool:
        """The image is a real chip's (its memory map, no semihosting): worth flashing."""
        return self.console is Console.USART

    def flash_commands(self, image: str) -> list[str]:
        """How to write `image` (.elf/.bin/.hex, one stem) to the chip, with the usual tools."""
        stem = image.removesuffix(".elf")
        return [f"st-flash --reset write {stem}.bin 0x08000000",
                f'openocd -f interface/stlink.cfg -f target/stm32f4x.cfg -c "program {stem}.elf verify reset exit"',
                f"pyocd flash -t {self.pyocd_target} {stem}.hex"]


BOARDS = {b.name: b for b in [
    Board("mps2-an386", "cortex-m4", "Arm MPS2 with a Cortex-M4F, emulated by QEMU", machine="mps2-an386"),
    Board("mps2-an500", "cortex-m7", "Arm MPS2 with a Cortex-M7, emulated by QEMU", machine="mps2-an500"),
    Board("mps2-an505", "cortex-m33", "Arm MPS2+ with a Cortex-M33 (DSP extension, FPU), emulated by QEMU",
          machine="mps2-an505"),
    Board("mps2-an385", "cortex-m0plus", "Arm MPS2 with a Cortex-M3, emulated by QEMU, running Armv6-M code",
          machine="mps2-an385",
          stand_in="QEMU emulates no Cortex-M0+: this Armv6-M image runs on the MPS2's Cortex-M3, whose "
                   "instruction set contains Armv6-M's; the instructions counted are the M0+'s, not its cycles"),
    Board("mps3-an547", "cortex-m55", "Arm MPS3 with a Cortex-M55, emulated by QEMU", machine="mps3-an547"),
    Board("netduinoplus2", "cortex-m4", "Netduino Plus 2: STM32F405RG, Cortex-M4F, 1 MB flash, 128 KB SRAM + "
          "64 KB CCM, emulated by QEMU; output on USART1", machine="netduinoplus2", console=Console.USART,
          pyocd_target="stm32f405rg"),
    Board("stm32f746", "cortex-m7", "STM32F746, 1 MB flash, 320 KB RAM; no emulator, fit check only"),
    Board("stm32h743", "cortex-m7", "STM32H743, 2 MB flash, 1 MB RAM; no emulator, fit check only"),
]}


def emulated_board(core: str) -> Board | None:
    """The MPS board QEMU runs `core`'s C on (the first in BOARDS), or None (the Cortex-M85)."""
    return next((b for b in BOARDS.values() if b.core == core and b.runnable
                 and b.console is Console.SEMIHOSTING), None)


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None
