#!/usr/bin/env python3
"""Soak: 10,000 random inputs across every fixture model, bit for bit against TFLite, plus the
compiler's peak host memory on the largest model.

Each fixture model is compiled once and built once (-O2, with -DMNV2_DEBUG_CANARIES so the
arena canaries are checked after every layer of every run); its share of the inputs goes
through the host harness and TFLite's reference kernels in batches. Inputs on which TFLite
itself aborts (its SOFTMAX assertion on flat inputs) have no reference and are reported
apart. The compiler's memory is measured in a fresh process: peak RSS (getrusage) and the
peak of Python allocations (tracemalloc).

    python bench/soak.py [--inputs 10000] [--batch 250] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import model_zoo  # noqa: E402
from host_check import HostModel, Tally  # noqa: E402

LARGEST = "mnv2_a10_224_c1000"  # MobileNetV2 1.0 at 224: the largest model in the zoo

MEMORY_PROBE = """
import json, resource, sys, time, tracemalloc
from mnv2gen.compiler import compile_model
tracemalloc.start()
start = time.perf_counter()
result = compile_model(sys.argv[1])
seconds = time.perf_counter() - start
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"seconds": seconds, "tracemalloc_peak": peak, "arena_bytes": result.arena_bytes,
                  "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def soak_model(name: str, count: int, batch: int, seed: int) -> tuple[str, Tally, float]:
    start = time.perf_counter()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="mnv2gen-soak-") as tmp:
        model = HostModel(model_zoo.get_model(name), Path(tmp))
        for first in range(0, count, batch):
            size = min(batch, count - first)
            # make_inputs appends the all-min and all-max inputs to each batch: keep the
            # total exact by asking for two fewer random ones.
            inputs = model.inputs(max(size - 2, 0), seed=seed * 100_003 + first)[-size:]
            tally.add(model.compare(inputs))
    return name, tally, time.perf_counter() - start


def compiler_memory(name: str) -> dict:
    path = model_zoo.get_model(name)
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True,
                            text=True, check=True)
    return {"model": name, **json.loads(result.stdout)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    names = sorted(model_zoo.MODELS)
    for name in names:  # build or fetch every fixture before the workers start
        model_zoo.get_model(name)
    shares = {name: args.inputs // len(names) + (i < args.inputs % len(names)) for i, name in enumerate(names)}
    start = time.perf_counter()
    total = Tally()
    with futures.ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(soak_model, name, shares[name], args.batch, args.seed) for name in names]
        for job in futures.as_completed(jobs):
            name, tally, seconds = job.result()
            total.add(tally)
            print(f"  {name:30s} {tally.matched:5,}/{tally.inputs:,} identical"
                  + (f", TFLite aborted on {tally.aborted}" if tally.aborted else "") + f"  ({seconds:.0f} s)",
                  flush=True)
    print(f"bit-exact {total.matched:,}/{total.inputs - total.aborted:,} inputs TFLite could run "
          f"({total.inputs:,} inputs, {total.aborted} aborted in TFLite), {len(names)} models, "
          f"{time.perf_counter() - start:.0f} s")
    memory = compiler_memory(LARGEST)
    print(f"compiler on {memory['model']}: peak RSS {memory['max_rss'] / 2**20:.0f} MiB, peak Python "
          f"allocations {memory['tracemalloc_peak'] / 2**20:.0f} MiB (tracemalloc), "
          f"{memory['seconds']:.1f} s under tracemalloc; arena {memory['arena_bytes']:,} bytes")
    return 0 if total.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
