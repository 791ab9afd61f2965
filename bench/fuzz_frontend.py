#!/usr/bin/env python3
"""Fuzz `mnv2gen compile` with 10,000 mutated models and report the outcomes by count.

Seeds: every single-op fixture and the MobileNetV2 a=0.35/96/10-class network (one case in
ten). Each case applies 1-3 random mutations (truncate, bit flip, byte overwrite, interesting
int32/float32 values, splice with another model, duplicated chunk, one schema field set to
an interesting value and re-serialized), byte mutations mostly within the
flatbuffer's structure, and compiles in a worker process (in-process there, through the
CLI's `main`, with a per-case timeout). A worker that dies counts its case as a crash.
Everything but `compiled` and `refused` is a bug; the script exits 1 if it saw any.

    python bench/fuzz_frontend.py [--cases 10000] [--seed 0] [--workers 2] [--max-seconds 1800]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as futures
import os
import random
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
from frontend_fuzz import Seed, mutate, run_case  # noqa: E402

NETWORK = "mnv2_a035_96_c10"
BATCH = 50  # cases per task: amortizes process hand-off, bounds what one crash loses

_seeds: list[Seed] = []
_network: Seed | None = None


def _load_seeds() -> None:
    global _network
    if not _seeds:
        _seeds.extend(Seed.from_path(k, model_zoo.single_op_model(k, 0)) for k in model_zoo.SINGLE_OP_KINDS)
        _network = Seed.from_path(NETWORK, model_zoo.get_model(NETWORK))


def case_bytes(case: int, base_seed: int) -> tuple[str, bytes]:
    rng = random.Random(base_seed * 1_000_003 + case)
    seed = _network if case % 10 == 0 else rng.choice(_seeds)
    return seed.name, mutate(seed, rng.choice(_seeds + [_network]), rng, rng.choice((1, 1, 2, 3)))


def run_batch(cases: list[int], base_seed: int, timeout: float) -> list[tuple[int, str, str]]:
    _load_seeds()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.tflite"
        for case in cases:
            name, data = case_bytes(case, base_seed)
            path.write_bytes(data)
            results.append((case, name, run_case(path, Path(tmp) / "out", timeout=timeout)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="stop submitting new batches after this long")
    args = parser.parse_args()
    _load_seeds()  # build or fetch the fixtures once, before the workers start

    start = time.perf_counter()
    counts: collections.Counter[str] = collections.Counter()
    failures: list[tuple[int, str, str]] = []
    batches = [list(range(i, min(i + BATCH, args.cases))) for i in range(0, args.cases, BATCH)]
    with futures.ProcessPoolExecutor(args.workers) as pool:
        pending = {pool.submit(run_batch, b, args.seed, args.timeout): b for b in batches}
        for future in futures.as_completed(pending):
            try:
                results = future.result()
            except futures.process.BrokenProcessPool:
                results = [(c, "?", "crash") for c in pending[future]]
            for case, name, outcome in results:
                counts[outcome.split(":")[0]] += 1
                if outcome not in ("compiled", "refused"):
                    failures.append((case, name, outcome))
            if time.perf_counter() - start > args.max_seconds:
                for f in pending:
                    f.cancel()
                break
    elapsed = time.perf_counter() - start
    total = sum(counts.values())
    print(f"{total:,} cases in {elapsed:.0f} s (seed {args.seed}, {args.workers} workers)")
    for outcome, n in counts.most_common():
        print(f"  {outcome:12s} {n:6,}")
    for case, name, outcome in sorted(failures)[:30]:
        print(f"  case {case} ({name}): {outcome}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
