"""The boards mnv2gen builds firmware for: core, compiler flags, linker script, emulator."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..targets import cpu_flags

@dataclass(frozen=True)
class Board:
    name: str
    core: str  # one of targets.CORE_FLAGS, and the `--target` of the generated C
    description: str
    machine: str | None = None  # QEMU's -M; None: no emulator, the build only checks the fit

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        return cpu_flags(self.core)

    @property
    def linker_script(self) -> str:
        return f"{self.name}.ld"

    @property
    def runnable(self) -> bool:
        return self.machine is not None


BOARDS = {b.name: b for b in [
    Board("mps2-an386", "cortex-m4", "Arm MPS2 with a Cortex-M4F, emulated by QEMU", machine="mps2-an386"),
    Board("mps2-an500", "cortex-m7", "Arm MPS2 with a Cortex-M7, emulated by QEMU", machine="mps2-an500"),
    Board("mps3-an547", "cortex-m55", "Arm MPS3 with a Cortex-M55, emulated by QEMU", machine="mps3-an547"),
    Board("stm32f746", "cortex-m7", "STM32F746, 1 MB flash, 320 KB RAM; no emulator, fit check only"),
    Board("stm32h743", "cortex-m7", "STM32H743, 2 MB flash, 1 MB RAM; no emulator, fit check only"),
]}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None
