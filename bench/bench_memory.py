#!/usr/bin/env python3
"""Arena of the streaming schedule against the anchors, in one run.

For MobileNetV2 with 1000 classes at a=0.35 (96, 128, 224) and a=1.0 (224, the paper's
Table 3 case), prints MNV2_ARENA_BYTES for each --optimize level beside TFLite Micro's arena
(measured now with the tflite-micro package) and the MobileNetV2 paper's bound M(G), with
the MAC overhead of each schedule against layer by layer. Arena bytes and MACs are exact.

    python bench/bench_memory.py [--quick]      (--quick: the 96x96 model only)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's mnv2gen, not an installed copy.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODELS = ["mnv2_a035_96_c1000", "mnv2_a035_128_c1000", "mnv2_a035_224_c1000", "mnv2_a10_224_c1000"]
TARGET, STRETCH = 40_960, 32_768


def main() -> int:
    import model_zoo
    from mnv2gen.codegen.render import Options
    from mnv2gen.presentation.memory import memory_report

    names = MODELS[:1] if "--quick" in sys.argv else MODELS
    print(f"{'model':<22}{'memory':>10}{'balanced':>10}{'speed':>11}{'paper M(G)':>12}{'TFLM arena':>12}"
          f"{'ours/TFLM':>11}{'ours/M(G)':>11}  MAC overhead")
    for name in names:
        report = memory_report(model_zoo.get_model(name), Options(optimize="memory"))
        arena = {s.optimize: s for s in report.schedules}
        base = arena["speed"].macs
        overhead = max(abs(s.macs / base - 1) for s in report.schedules)
        tflm = report.tflm_arena_bytes
        print(f"{name:<22}{arena['memory'].arena_bytes:>10,}{arena['balanced'].arena_bytes:>10,}"
              f"{arena['speed'].arena_bytes:>11,}{report.paper_bound_bytes:>12,}"
              f"{tflm or 0:>12,}{(report.arena_bytes / tflm if tflm else 0):>10.2f}x"
              f"{report.arena_bytes / report.paper_bound_bytes:>10.2f}x  {100 * overhead:.1f}%")
    print(f"\nissue targets for a=0.35/96: required <= 64,512 B (the paper's bound), target <= {TARGET:,} B, "
          f"stretch <= {STRETCH:,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
