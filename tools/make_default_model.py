#!/usr/bin/env python3
"""Writes the default model: an int8 MobileNetV2 made by the TFLite converter.

    python tools/make_default_model.py [OUTPUT] [--seed N]

OUTPUT defaults to ``models/mobilenet_v2_035_96.tflite`` under the repository
root.  The network is ``keras.applications.MobileNetV2`` with alpha=0.35,
96x96x3 input and 1000 classes, untrained but with spread batch-norm
parameters and a calibrated classifier (see ``model_builders``), converted to
full-integer int8 with int8 input and output.  The script checks that the
result has the expected 65 operators.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import model_builders as mb

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "models" / "mobilenet_v2_035_96.tflite"

EXPECTED_OPS = mb.FLAGSHIP_OPS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0, help="weights/data seed (default 0)")
    args = parser.parse_args(argv)

    data = mb.build_default_mobilenet_v2(seed=args.seed)
    counts = dict(collections.Counter(mb.ops_in(data)))
    if counts != EXPECTED_OPS:
        print(f"unexpected operators {counts}, want {EXPECTED_OPS}", file=sys.stderr)
        return 1

    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    mb.atomic_write(out, data)
    print(f"wrote {out} ({len(data)} bytes, {sum(counts.values())} ops: {counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
