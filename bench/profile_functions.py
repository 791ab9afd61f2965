#!/usr/bin/env python3
"""Instructions per C function of one inference on an emulated Cortex-M: where the per-layer
counts of `mnv2gen run --profile` say a layer is slow, this says which kernel function (and
how much of the pipeline engine) the instructions go to.

QEMU logs every translated block (`-d in_asm`: its function and instructions) and every
block it executes (`-d exec,nochain`: chaining off, so none is missed); executions times
block sizes, summed per function, are the instructions each function executed. Startup and
the harness are included (a few thousand instructions). The log of the flagship is a few
hundred MB in a temporary folder; a run takes about a minute.

    python bench/profile_functions.py [model.tflite] [--board B] [--optimize O] [--top N]
"""

from __future__ import annotations

import argparse
import collections
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "models" / "mobilenet_v2_035_96.tflite"

_INSTRUCTION = re.compile(r"^0x([0-9a-f]{8}):")
_EXECUTED = re.compile(r"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def block_profile(log: Path) -> collections.Counter:
    """Instructions executed per function, from QEMU's in_asm and exec log."""
    sizes, functions, executions = {}, {}, collections.Counter()
    start, function = None, "?"
    with open(log, errors="replace") as lines:
        for line in lines:
            if line.startswith("IN:"):
                start, function = None, line[3:].strip() or "?"
            elif (m := _INSTRUCTION.match(line)) is not None:
                if start is None:
                    start = int(m[1], 16)
                    sizes[start], functions[start] = 0, function
                sizes[start] += 1
            elif (m := _EXECUTED.search(line)) is not None:
                executions[int(m[1], 16)] += 1
            elif not line.strip():
                start = None
    per_function = collections.Counter()
    for pc, times in executions.items():
        per_function[functions.get(pc, "?")] += times * sizes.get(pc, 0)
    return per_function


def main() -> int:
    from mnv2gen.codegen.render import Options
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.firmware.boards import BOARDS, get_board
    from mnv2gen.firmware.build import build_firmware
    from mnv2gen.firmware.runner import tool
    from mnv2gen.verification.compare import make_inputs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--board", default="mps2-an386", choices=[b for b in BOARDS if BOARDS[b].runnable])
    parser.add_argument("--optimize", default="memory", choices=["memory", "balanced", "speed"])
    parser.add_argument("--top", type=int, default=25, help="functions to list (default: 25)")
    args = parser.parse_args()

    board = get_board(args.board)
    with tempfile.TemporaryDirectory(prefix="mnv2gen-profile-") as tmp:
        work = Path(tmp)
        result = compile_model(args.model, Options(target=board.core, optimize=args.optimize))
        write_files(result.files, work / "c")
        firmware = build_firmware(work / "c", "mnv2", board, work)
        inputs = make_inputs(result.graph, 1, 0)[:1]
        (work / "input.bin").write_bytes(b"MNV2" + struct.pack("<I", 1) + inputs.tobytes())
        command = [tool("qemu-system-arm"), "-M", board.machine, "-nographic", "-semihosting-config",
                   "enable=on,target=native,arg=firmware,arg=input.bin,arg=output.bin",
                   "-kernel", str(firmware.elf.resolve()), "-d", "in_asm,exec,nochain", "-D", str(work / "qemu.log")]
        subprocess.run(command, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, timeout=1800, check=True)
        per_function = block_profile(work / "qemu.log")
    total = sum(per_function.values())
    print(f"model: {args.model}, {board.name} ({board.core}), --optimize {args.optimize}")
    for name, count in per_function.most_common(args.top):
        print(f"{count:>13,} {100 * count / total:5.1f}%  {name}")
    print(f"{total:>13,} in all (one inference, startup and harness included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
