"""Run a USART board's firmware under QEMU: the inputs are linked into the image, the outputs
come back as text lines on the chip's first USART (see linked_harness.c).

The firmware never exits (it is the image a chip runs): after its "harness: exit <code>" line
the runner stops QEMU, which then writes the plugin's instruction counts.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .build import Firmware
from .runner import SECONDS_PER_INPUT, FirmwareFailed, QemuRun, Span, parse_counts, usart_qemu_command

_OUTPUT_LINE = re.compile(r"^output (\d+) ([0-9a-f]*)$")
_EXIT_LINE = re.compile(r"^harness: exit (\d+)$")
_STACK_LINE = re.compile(r"^harness: stack_bytes=(\d+)$")


def _console_lines(command: list[str], cwd: Path, timeout: float, name: str) -> list[str]:
    """The serial port's lines up to and including "harness: exit N"; QEMU is stopped then."""
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    lines, pending, deadline = [], b"", time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while not (lines and _EXIT_LINE.match(lines[-1])):
                if time.monotonic() > deadline:
                    raise FirmwareFailed(f"{name} did not finish in {timeout:.0f} s")
                if not selector.select(timeout=1.0):
                    continue
                chunk = process.stdout.read1(65536)
                if not chunk:
                    raise FirmwareFailed(f"QEMU ended before the firmware did: "
                                         f"{process.stderr.read().decode(errors='replace')[-500:]}")
                pending += chunk
                *complete, pending = pending.split(b"\n")
                lines += [line.decode(errors="replace").rstrip("\r") for line in complete]
    finally:
        process.terminate()  # QEMU exits cleanly on SIGTERM, and the plugin writes its counts
        process.communicate(timeout=30)
    return lines


def run_usart(firmware: Firmware, count: int, output_dtype: np.dtype, output_shape: tuple[int, ...],
              *, trace_hook: str | None = None, timeout: float | None = None) -> QemuRun:
    """Run the firmware, which holds `count` inputs; return what it printed, parsed."""
    timeout = timeout or 60 + SECONDS_PER_INPUT * count
    name = f"{firmware.elf.name} on {firmware.board.name}"
    with tempfile.TemporaryDirectory(prefix="mnv2gen-qemu-") as tmp:
        lines = _console_lines(usart_qemu_command(firmware, trace_hook), Path(tmp), timeout, name)
        counts = (Path(tmp) / "counts.txt").read_text()
    code = int(_EXIT_LINE.match(lines[-1])[1])
    if code != 0:
        raise FirmwareFailed(f"{name} exited with {code}: {' | '.join(lines[-3:])}")
    outputs = [bytes.fromhex(m[2]) for m in map(_OUTPUT_LINE.match, lines) if m]
    stack = [int(m[1]) for m in map(_STACK_LINE.match, lines) if m]
    expected = int(np.prod(output_shape)) * np.dtype(output_dtype).itemsize
    if len(outputs) != count or any(len(o) != expected for o in outputs) or not stack:
        raise FirmwareFailed(f"{name} printed {len(outputs)} outputs for {count} inputs: {lines[-3:]}")
    runs, layers, tails = parse_counts(counts)
    if len(runs) != count:
        raise FirmwareFailed(f"the plugin counted {len(runs)} runs for {count} inputs")
    return QemuRun(
        outputs=np.frombuffer(b"".join(outputs), dtype=output_dtype).reshape((count, *output_shape)),
        runs=runs, layers=[layers[i] for i in range(count)],
        tails=[tails.get(i, Span(0, 0)) for i in range(count)], stack_bytes=stack[0])
