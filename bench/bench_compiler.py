#!/usr/bin/env python3
"""Benchmark the end-to-end compiler on the flagship shape (MobileNetV2 a=0.35, 96x96, 1000
classes), printing our figures beside TFLite's in one run:

* arena: MNV2_ARENA_BYTES against TFLite Micro's arena (measured now with the tflite-micro
  package) and the MobileNetV2 paper's bound;
* compile time of `mnv2gen compile` (median of several runs);
* host time per inference: the generated C (gcc -O3) against TFLite's reference interpreter and
  its default (optimized) one.

Times are medians on a shared, noisy machine: read them as ratios, not absolutes.

    python bench/bench_compiler.py [model.tflite] [--inputs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "models" / "mobilenet_v2_035_96.tflite"


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--inputs", type=int, default=20, help="inputs timed per engine")
    args = parser.parse_args()

    from mnv2gen import ir, oracle
    from mnv2gen.compiler import compile_model, write_files
    from mnv2gen.host_sim.build import build_host
    from mnv2gen.verification.compare import make_inputs

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "c"
        # Compile time as a user sees it: a fresh process running the command.
        compile_s = median_seconds(lambda: subprocess.run(
            ["mnv2gen", "compile", args.model, "--out", str(out), "--quiet"], check=True), repeat=5)
        result = compile_model(args.model)
        write_files(result.files, out)
        binary = build_host(out, "mnv2", Path(tmp) / "model", opt="-O3")  # gcc vectorizes the portable C at -O3
        inputs = make_inputs(result.graph, args.inputs)
        request = b"MNV2" + np.uint32(len(inputs)).tobytes() + inputs.tobytes()
        ours_s = median_seconds(lambda: subprocess.run([str(binary)], input=request, capture_output=True,
                                                       check=True), repeat=3) / len(inputs)
        ref_s = _interpreter_seconds(args.model, inputs, reference=True) / len(inputs)
        default_s = _interpreter_seconds(args.model, inputs, reference=False) / len(inputs)
        graph = result.graph
        tflm_info = oracle.tflm_outputs(args.model, inputs[:1], graph.output.shape,
                                        ir.DTYPES[graph.output.dtype][0]).info

    bound = result.paper_bound
    tflm_total = tflm_info.get("arena_total_bytes")
    tflm_head = tflm_info.get("arena_head_bytes")
    rows = [
        ("arena (bytes)", f"{result.arena_bytes:,}",
         f"TFLite Micro {tflm_total:,} ({tflm_head:,} activations)" if tflm_total else "TFLite Micro n/a",
         f"{result.arena_bytes / tflm_total:.2f}x" if tflm_total else ""),
        ("paper bound M(G) (bytes)", f"{bound:,}", "", f"arena/bound {result.arena_bytes / bound:.2f}x"),
        ("compile time (s)", f"{compile_s:.2f}", "", ""),
        ("host time / inference (ms)", f"{ours_s * 1e3:.1f}", f"TFLite reference {ref_s * 1e3:.1f}",
         f"{ours_s / ref_s:.2f}x"),
        ("", "", f"TFLite default (XNNPACK) {default_s * 1e3:.1f}", f"{ours_s / default_s:.2f}x"),
    ]
    print(f"model: {args.model}")
    print(f"{'figure':<28}{'mnv2gen':>12}   {'anchor':<44}{'ratio':>10}")
    for name, ours, anchor, ratio in rows:
        print(f"{name:<28}{ours:>12}   {anchor:<44}{ratio:>10}")
    return 0


def _interpreter_seconds(model_path, inputs, reference: bool) -> float:
    """Time of TFLite's interpreter over the inputs, in this process (set-up not counted):
    its reference kernels, or its default optimized ones (XNNPACK)."""
    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    interpreter = tf.lite.Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=resolver.BUILTIN_REF if reference else resolver.AUTO)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run_all():
        for x in inputs:
            interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
            interpreter.invoke()
            interpreter.get_tensor(out["index"])

    run_all()  # warm-up
    return median_seconds(run_all, repeat=3)


if __name__ == "__main__":
    sys.exit(main())
