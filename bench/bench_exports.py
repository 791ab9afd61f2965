#!/usr/bin/env python3
"""Instructions per MAC on the emulated Cortex-M4 of the fixtures that look like real trained
exports (tests/model_zoo.py TRAINED_EXPORTS: trained weights, dead and near-dead channels,
explicit asymmetric PADs) beside the flagship's. Issue 12's target: each within 5% of the
flagship's. Every run is checked bit-exact against TFLite's reference kernels.

    python bench/bench_exports.py [--inputs N]

bench/bench_firmware.py prints this table after its own unless given --no-exports. The
fixtures are built with TensorFlow on first use and cached ($MNV2GEN_MODEL_CACHE).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # model_zoo
DEFAULT_MODEL = ROOT / "models" / "mobilenet_v2_035_96.tflite"
BOARD = "mps2-an386"
TARGET_RATIO = 1.05  # issue 12: instructions per MAC within 5% of the flagship's


def measure(model: Path, inputs: int, workdir: Path) -> tuple[int, int, bool]:
    """(instructions per inference, MACs, bit-exact) of `model` on the M4."""
    from mnv2gen.codegen.render import Options
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.firmware.boards import get_board
    from mnv2gen.verification.board import run_on_board

    board = get_board(BOARD)
    result = compile_model(model, Options(target=board.core))
    write_files(result.files, workdir)
    report = run_on_board(model, result, workdir, board, count=inputs, per_layer=False)
    return report.instructions_per_inference, sum(op.macs() for op in result.plan.steps), report.bit_exact


def print_exports_table(flagship: Path = DEFAULT_MODEL, inputs: int = 1) -> bool:
    """Prints the table; returns whether every run was bit-exact."""
    import model_zoo  # pylint: disable=import-outside-toplevel

    models = {"flagship": flagship, **{name: model_zoo.get_model(name) for name in model_zoo.TRAINED_EXPORTS}}
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: measure(path, inputs, Path(tmp) / name) for name, path in models.items()}
    base = rows["flagship"][0] / rows["flagship"][1]
    print(f"{'Cortex-M4, trained-export fixtures':<36}{'instructions':>14}{'MACs':>13}{'instr/MAC':>11}"
          f"{'vs flagship':>13}  within 5%  bit-exact")
    for name, (instructions, macs, exact) in rows.items():
        ratio = instructions / macs / base
        print(f"{name:<36}{instructions:>14,}{macs:>13,}{instructions / macs:>11.3f}{ratio:>12.3f}x"
              f"  {'yes' if ratio <= TARGET_RATIO else 'NO':>9}  {'yes' if exact else 'MISMATCH':>9}")
    return all(exact for _, _, exact in rows.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flagship", default=str(DEFAULT_MODEL))
    parser.add_argument("--inputs", type=int, default=1,
                        help="random inputs per model, besides the all-min and all-max ones (default: 1)")
    args = parser.parse_args()
    return 0 if print_exports_table(Path(args.flagship), args.inputs) else 1


if __name__ == "__main__":
    sys.exit(main())
