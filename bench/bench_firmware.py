#!/usr/bin/env python3
"""Benchmark the generated firmware on emulated Cortex-M cores (QEMU 7.2), printing our figures
beside TFLite Micro's (the anchors, measured the same way: one inference between two marker
functions, instructions counted exactly by a TCG plugin):

* executed instructions per inference on the Cortex-M4 (mps2-an386) and Cortex-M7
  (mps2-an500), and on the cores without an anchor: the Cortex-M33 (mps2-an505, DSP
  kernels), the Cortex-M55 (mps3-an547) with the Helium kernels and, to show what Helium
  adds, with the DSP ones, the Cortex-M85's build (-march=armv8.1-m.main+mve.fp+fp.dp; no
  QEMU board has the core) run on the M55 as a stand-in, and the Cortex-M0+'s Armv6-M build
  (portable kernels) run on the Cortex-M3 of mps2-an385 as a stand-in;
* a Cortex-M4 cycle estimate (per-instruction-class cost table: an estimate, and not the
  same table as the anchors', so compare it loosely), at zero flash wait states and at 5 (a
  168 MHz STM32F4 without its flash cache: every 128-bit line of code fetched and every load
  from flash stalls 5 cycles; see firmware/insn_count.c). TFLite Micro's 5-wait-state figure
  needs its own count of flash accesses, which ../shared/anchors.md does not have: n/a;
* code size without the weights, arena and stack high-water mark.

Every run is also checked bit-exact against TFLite's reference kernels.

    python bench/bench_firmware.py [model.tflite] [--inputs N] [--boards B ...] [--no-exports]

Then, unless --no-exports, bench_exports.py's table: the trained-export fixtures' instructions
per MAC on the Cortex-M4 beside the flagship's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "models" / "mobilenet_v2_035_96.tflite"

# TFLite Micro on the same model, from ../shared/anchors.md (QEMU 7.2, arm-none-eabi-gcc 12.2).
TFLM_REF = "TFLM ref"
TFLM_CMSIS = "TFLM+CMSIS-NN"
ANCHOR_INSTRUCTIONS = {
    "mps2-an386": {TFLM_REF: 193_389_154, TFLM_CMSIS: 48_586_475},
    "mps2-an500": {TFLM_REF: 195_654_283, TFLM_CMSIS: 48_448_373},
}
ANCHOR_M4_CYCLES = {TFLM_REF: 268_000_000, TFLM_CMSIS: 60_000_000}  # "≈", their own estimate
ANCHOR_CODE_BYTES = {TFLM_REF: 59_292, TFLM_CMSIS: 103_644}  # .text without the model
ANCHOR_ARENA_BYTES = {TFLM_REF: 218_192, TFLM_CMSIS: 212_660}  # host build; Cortex-M4 build
ANCHOR_STACK_BYTES = {TFLM_CMSIS: 1_340}

CORE_NAMES = {"mps2-an386": "Cortex-M4", "mps2-an500": "Cortex-M7", "mps2-an505": "Cortex-M33",
              "mps3-an547": "Cortex-M55", "mps2-an385": "Cortex-M0+ (Armv6-M on QEMU's M3)"}


# (board, the --target if not the board's core, kernel variant or None for the target's own):
# the M55 runs both its variants, and the M85's build.
RUNS = (("mps2-an386", None, None), ("mps2-an500", None, None), ("mps2-an505", None, None),
        ("mps3-an547", None, "dsp"), ("mps3-an547", None, None), ("mps3-an547", "cortex-m85", None),
        ("mps2-an385", None, None))
VARIANT_NAMES = {"dsp": "DSP kernels", "mve": "Helium kernels"}


def measure(model: str, board_name: str, target: str | None, kernels: str | None, inputs: int, workdir: Path):
    import dataclasses

    from mnv2gen.codegen.render import Options
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.firmware.boards import get_board
    from mnv2gen.verification.board import run_on_board

    board = get_board(board_name)
    if target is not None:  # another core's build, on this board's core of the same architecture
        board = dataclasses.replace(board, core=target, stand_in=f"the {target} build, run on {board.name}")
    out = workdir / f"{board.core}-{kernels or 'own'}"
    result = compile_model(model, Options(target=board.core, kernels=kernels))
    write_files(result.files, out)
    return run_on_board(model, result, out, board, count=inputs, per_layer=False)


def _row(name: str, ours: int | None, anchors: dict[str, int], prefix: str = "") -> str:
    cells = [f"{name:<62}", f"{prefix}{ours:,}".rjust(14) if ours is not None else f"{'n/a':>14}"]
    for engine in (TFLM_REF, TFLM_CMSIS):
        anchor = anchors.get(engine)
        if anchor is None or ours is None:
            cells.append(f"{'':>14}{'':>9}")
        else:
            cells.append(f"{prefix}{anchor:,}".rjust(14) + f"{ours / anchor:8.2f}x")
    return "".join(cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--inputs", type=int, default=1,
                        help="random inputs per board, besides the all-min and all-max ones (default: 1)")
    parser.add_argument("--boards", nargs="+", default=list(CORE_NAMES), choices=list(CORE_NAMES))
    parser.add_argument("--no-exports", action="store_true",
                        help="skip the trained-export fixtures' instructions per MAC (bench_exports.py)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        reports = {(board, target, kernels): measure(args.model, board, target, kernels, args.inputs, Path(tmp))
                   for board, target, kernels in RUNS if board in args.boards}
    print(f"model: {args.model}")
    print_table(reports)
    print()
    for (board, target, kernels), report in reports.items():
        verdict = "bit-exact" if report.bit_exact else "MISMATCH"
        print(f"{_run_name(board, target, kernels)} ({board}): {report.matched}/{report.inputs} outputs identical "
              f"to TFLite's reference kernels: {verdict}")
    print("TFLite Micro figures: ../shared/anchors.md (arena: TFLM ref on the host; CMSIS-NN on the "
          "Cortex-M4 build). Cycle estimates come from different cost tables; TFLite Micro's at 5 wait "
          "states would need its flash accesses counted by our plugin, which the anchors lack.")
    exports_exact = True
    if not args.no_exports and "mps2-an386" in args.boards:
        from bench_exports import print_exports_table  # this folder's

        print()
        exports_exact = print_exports_table(Path(args.model), args.inputs)
    return 0 if exports_exact and all(r.bit_exact for r in reports.values()) else 1


def _run_name(board: str, target: str | None, kernels: str | None) -> str:
    """The core, and on the Cortex-M55 (which runs two variants and the M85's build) which."""
    if target == "cortex-m85":
        return "Cortex-M85 build, Helium (on QEMU's M55)"
    if board != "mps3-an547":
        return CORE_NAMES[board]
    return f"{CORE_NAMES[board]}, {VARIANT_NAMES[kernels or 'mve']}"


def print_table(reports: dict) -> None:
    print(f"{'figure':<62}{'mnv2gen':>14}" + "".join(f"{e:>14}{'ratio':>9}" for e in (TFLM_REF, TFLM_CMSIS)))
    for (board, target, kernels), report in reports.items():
        print(_row(f"instructions/inference, {_run_name(board, target, kernels)}", report.instructions_per_inference,
                   ANCHOR_INSTRUCTIONS.get(board, {})))
    m4 = reports.get(("mps2-an386", None, None))
    if m4 is not None:
        summary = m4.summary()
        print(_row("Cortex-M4 cycles, 0 flash wait states (estimate)", summary["cycles_estimate_m4"],
                   ANCHOR_M4_CYCLES, "~"))
        print(_row(f"Cortex-M4 cycles, {summary['flash_wait_states']} wait states, no cache (estimate)",
                   summary["cycles_estimate_m4_wait_states"], {}, "~"))
    # Sizes and stack of the M4 build when there is one, as the anchors'.
    sized = m4 or next(iter(reports.values()))
    core = CORE_NAMES[sized.board.name]
    print(_row(f"code without weights, {core} (B)", sized.sizes["code_bytes"], ANCHOR_CODE_BYTES))
    print(_row("  of which .text (B)", sized.sizes["text_bytes"], {}))
    print(_row("weights (B)", sized.sizes["weights_bytes"], {}))
    print(_row("arena (B)", sized.arena_bytes, ANCHOR_ARENA_BYTES))
    print(_row(f"stack of one inference, {core} (B)", sized.stack_bytes, ANCHOR_STACK_BYTES))


if __name__ == "__main__":
    sys.exit(main())
