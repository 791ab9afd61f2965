#!/usr/bin/env python3
"""Where one inference's instructions go on the Cortex-M55 (mps3-an547, Helium kernels), per
kind of kernel, beside TFLite Micro + CMSIS-NN's split on the same model (../shared/anchors.md:
1x1 convolutions 48%, depthwise 19%, TFLite Micro's reference MEAN 10.7% of 14,461,703).

The split is exact: the model is compiled layer by layer (`--optimize speed`, the same kernels
and arithmetic as the default schedule, which streams rows and differs by a fraction of a
percent), so each layer of the traced build is one op, and the trace hook after every layer
gives its instructions. The default schedule's total is printed too. Both runs are checked
bit-exact against TFLite's reference kernels.

    python bench/bench_kernel_split.py [model.tflite] [--board mps3-an547]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "models" / "mobilenet_v2_035_96.tflite"

# TFLite Micro + CMSIS-NN (Helium) on the flagship, mps3-an547 (../shared/anchors.md): its
# instructions per inference and the shares of them it names per kernel; the rest unnamed.
TFLM_CMSIS_M55_INSTRUCTIONS = 14_461_703
TFLM_CMSIS_M55_SHARES = {"1x1 convolutions": 0.48, "depthwise convolutions": 0.19, "MEAN": 0.107}

KINDS = ("1x1 convolutions", "depthwise convolutions", "other convolutions (the stem)", "residual ADDs", "MEAN",
         "FULLY_CONNECTED", "SOFTMAX", "other ops")


def kernel_kind(op) -> str:
    """The row of the table a single op's instructions go to."""
    from mnv2gen import ir

    if isinstance(op, ir.RowPipeline) and len(op.stages) == 1:
        op = op.stages[0]
    if isinstance(op, ir.DepthwiseConv2D):
        return "depthwise convolutions"
    if isinstance(op, ir.Conv2D):
        return "1x1 convolutions" if op.kernel == (1, 1) else "other convolutions (the stem)"
    kinds = {ir.Add: "residual ADDs", ir.Mean: "MEAN", ir.FullyConnected: "FULLY_CONNECTED", ir.Softmax: "SOFTMAX"}
    return next((kind for cls, kind in kinds.items() if isinstance(op, cls)), "other ops")


def measure(model: str, board_name: str, optimize: str, per_layer: bool, workdir: Path):
    from mnv2gen.codegen.render import Options
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.firmware.boards import get_board
    from mnv2gen.verification.board import run_on_board

    board = get_board(board_name)
    result = compile_model(model, Options(target=board.core, optimize=optimize))
    out = workdir / optimize
    write_files(result.files, out)
    report = run_on_board(model, result, out, board, count=1, per_layer=per_layer)
    if not report.bit_exact:
        raise SystemExit(f"{model}: the {optimize} build on {board_name} is not bit-exact with TFLite")
    return result, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--board", default="mps3-an547")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mnv2gen-split-") as tmp:
        result, report = measure(args.model, args.board, "speed", True, Path(tmp))
        _, streamed = measure(args.model, args.board, "memory", False, Path(tmp))
    if not report.layers:
        raise SystemExit(f"no per-layer counts: {report.layers_note}")
    split = Counter()
    for step, layer in zip(result.plan.steps, report.layers):
        split[kernel_kind(step)] += layer.instructions
    total = sum(split.values())

    print(f"model: {args.model}, {args.board}, one inference, instructions per kind of kernel")
    print(f"(layer by layer: {report.instructions_per_inference:,} in all, the layers {total:,}; "
          f"the default streamed schedule: {streamed.instructions_per_inference:,})")
    print(f"{'kernel':32s} {'mnv2gen':>12s} {'share':>7s}   {'TFLM+CMSIS-NN':>13s} {'share':>7s}   {'ratio':>6s}")
    named = 0.0
    for kind in KINDS:
        ours = split.get(kind, 0)
        if not ours and kind not in TFLM_CMSIS_M55_SHARES:
            continue
        share = TFLM_CMSIS_M55_SHARES.get(kind)
        theirs = "" if share is None else f"{round(share * TFLM_CMSIS_M55_INSTRUCTIONS):>13,} {share:>7.1%}"
        ratio = "" if share is None else f"{ours / (share * TFLM_CMSIS_M55_INSTRUCTIONS):>5.2f}x"
        named += share or 0.0
        print(f"{kind:32s} {ours:>12,} {ours / total:>7.1%}   {theirs:>21s}   {ratio:>6s}")
    rest = 1.0 - named
    print(f"{'(TFLM+CMSIS-NN: the rest, unsplit)':32s} {'':>12s} {'':>7s}   "
          f"{round(rest * TFLM_CMSIS_M55_INSTRUCTIONS):>13,} {rest:>7.1%}")
    print(f"{'in all':32s} {total:>12,} {1:>7.1%}   {TFLM_CMSIS_M55_INSTRUCTIONS:>13,} {1:>7.1%}   "
          f"{total / TFLM_CMSIS_M55_INSTRUCTIONS:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
