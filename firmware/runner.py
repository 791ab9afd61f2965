"""Run firmware under qemu-system-arm, instructions counted by our TCG plugin between the
harness's marker functions.

On semihosting boards the input file follows host_sim's protocol ("MNV2", uint32 count, the
inputs); the harness writes the outputs back to a file and its stack high-water mark to the
console (stderr). On USART boards the inputs are in the image and everything comes back as
text lines on the serial port (see linked_harness.c); see usart.py.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .build import Firmware, tool
from .plugin import plugin_path

MARKER_BEGIN, MARKER_END = "harness_marker_begin", "harness_marker_end"
SECONDS_PER_INPUT = 30  # generous: the largest fixture models take a few seconds under QEMU


class FirmwareFailed(Exception):
    """The firmware faulted, failed, hung, or broke the protocol."""


# The flash wait states the Cortex-M4 cycle estimate is also given for: 5, as on a 168 MHz
# STM32F4 reading its flash without the ART cache.
FLASH_WAIT_STATES = 5


@dataclass(frozen=True)
class Span:
    instructions: int  # exact
    cycles: int  # Cortex-M4 estimate at zero wait states (see insn_count.c)
    flash_accesses: int = 0  # flash line fetches and data reads, each paying the wait states

    def cycles_at(self, wait_states: int) -> int:
        """The estimate on a flash of `wait_states` wait states, no cache (insn_count.c's model)."""
        return self.cycles + wait_states * self.flash_accesses


@dataclass
class QemuRun:
    outputs: np.ndarray  # first axis: input number
    runs: list[Span]  # one per input, in order
    layers: list[list[Span]] = field(default_factory=list)  # per input: one per trace-hook call
    tails: list[Span] = field(default_factory=list)  # per input: last hook call to end marker
    stack_bytes: int = 0


def _plugin_argument(firmware: Firmware, trace_hook: str | None) -> str:
    # QEMU's option syntax escapes a comma by doubling it.
    args = [str(plugin_path()).replace(",", ",,"),
            f"begin={firmware.symbol_address(MARKER_BEGIN):#x}",
            f"end={firmware.symbol_address(MARKER_END):#x}",
            "out=counts.txt"]
    if trace_hook:
        args.append(f"layer={firmware.symbol_address(trace_hook):#x}")
    return ",".join(args)


def qemu_command(firmware: Firmware, trace_hook: str | None = None) -> list[str]:
    """The QEMU command line; run it in a folder holding input.bin (it writes output.bin)."""
    return [tool("qemu-system-arm"), "-M", firmware.board.machine, "-nographic",
            # target=native: semihosting file operations reach the host's files (the cwd).
            "-semihosting-config", "enable=on,target=native,arg=firmware,arg=input.bin,arg=output.bin",
            "-kernel", str(firmware.elf.resolve()),
            "-plugin", _plugin_argument(firmware, trace_hook)]


def usart_qemu_command(firmware: Firmware, trace_hook: str | None = None) -> list[str]:
    """The QEMU command line of a USART board: its first serial port (USART1) on stdout."""
    return [tool("qemu-system-arm"), "-M", firmware.board.machine, "-nographic",
            "-kernel", str(firmware.elf.resolve()), "-plugin", _plugin_argument(firmware, trace_hook)]


_COUNT_LINE = re.compile(r"^(run|tail) (\d+) insns (\d+) cycles (\d+) flash (\d+)$"
                         r"|^layer (\d+) (\d+) insns (\d+) cycles (\d+) flash (\d+)$")


def parse_counts(text: str) -> tuple[list[Span], dict[int, list[Span]], dict[int, Span]]:
    """The plugin's report: per-run totals, per-run layer spans (in hook-call order), tails."""
    runs, layers, tails = [], defaultdict(list), {}
    for line in text.splitlines():
        m = _COUNT_LINE.match(line)
        if m is None:
            raise FirmwareFailed(f"unexpected line from the QEMU plugin: {line!r}")
        if m[1] == "run":
            runs.append(Span(int(m[3]), int(m[4]), int(m[5])))
        elif m[1] == "tail":
            tails[int(m[2])] = Span(int(m[3]), int(m[4]), int(m[5]))
        else:
            layers[int(m[6])].append(Span(int(m[8]), int(m[9]), int(m[10])))
    return runs, layers, tails


_STACK_LINE = re.compile(r"^harness: stack_bytes=(\d+)$", re.MULTILINE)


def run_qemu(firmware: Firmware, inputs: np.ndarray, output_dtype: np.dtype, output_shape: tuple[int, ...],
             *, trace_hook: str | None = None, timeout: float | None = None) -> QemuRun:
    """Feed a batch of inputs (first axis = input number) to the firmware under QEMU."""
    inputs = np.ascontiguousarray(inputs)
    timeout = timeout or 60 + SECONDS_PER_INPUT * len(inputs)
    with tempfile.TemporaryDirectory(prefix="mnv2gen-qemu-") as tmp:
        work = Path(tmp)
        (work / "input.bin").write_bytes(b"MNV2" + struct.pack("<I", len(inputs)) + inputs.tobytes())
        command = qemu_command(firmware, trace_hook)
        try:
            result = subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareFailed(f"{firmware.elf.name} on {firmware.board.name} did not finish "
                                 f"in {timeout:.0f} s") from None
        if result.returncode != 0:
            raise FirmwareFailed(f"{firmware.elf.name} on {firmware.board.name} exited with "
                                 f"{result.returncode}: {(result.stderr + result.stdout).strip()[-2000:]}")
        outputs = (work / "output.bin").read_bytes()
        counts = (work / "counts.txt").read_text()
    expected = len(inputs) * int(np.prod(output_shape)) * np.dtype(output_dtype).itemsize
    if len(outputs) != expected:
        raise FirmwareFailed(f"the firmware wrote {len(outputs)} bytes, expected {expected}")
    runs, layers, tails = parse_counts(counts)
    stack = _STACK_LINE.search(result.stderr)
    if len(runs) != len(inputs) or stack is None:
        raise FirmwareFailed(f"the firmware reported {len(runs)} runs for {len(inputs)} inputs; "
                             f"console: {result.stderr.strip()[-500:]!r}")
    return QemuRun(
        outputs=np.frombuffer(outputs, dtype=output_dtype).reshape((len(inputs), *output_shape)),
        runs=runs, layers=[layers[i] for i in range(len(runs))],
        tails=[tails.get(i, Span(0, 0)) for i in range(len(runs))],
        stack_bytes=int(stack[1]),
    )
