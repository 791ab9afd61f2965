"""Build generated C with the host compiler, together with the harness."""

from __future__ import annotations

import importlib.resources
import subprocess
from pathlib import Path

from ..targets import C_FLOAT_FLAGS, C_WARNINGS
from ..verification.harness import find_compiler, model_defines, streams_input

SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def harness_source() -> Path:
    return Path(str(importlib.resources.files("mnv2gen.host_sim").joinpath("harness.c")))


def build_host(c_dir: str | Path, prefix: str, binary: str | Path, *, trace: bool = False,
               sanitize: bool = False, compiler: str | None = None, opt: str = "-O2",
               extra_flags: tuple[str, ...] = (), external_arena: bool = False) -> Path:
    """Compile every .c of `c_dir` plus the harness into `binary`; `extra_flags` go to the
    compiler as they are, after the standard ones (e.g. the generated C's
    -D<PREFIX>_DEBUG_CANARIES). -lm: ONNX models' fmaf. `external_arena`: the C was generated
    with --arena external, and the harness hands it a buffer."""
    c_dir, binary = Path(c_dir), Path(binary)
    sources = sorted(str(p) for p in c_dir.glob("*.c")) + [str(harness_source())]
    command = [find_compiler(compiler), opt, *C_WARNINGS, *C_FLOAT_FLAGS, *(SANITIZERS if sanitize else []),
               *extra_flags, "-I", str(c_dir), *model_defines(prefix, trace, streams_input(c_dir, prefix), external_arena), *sources, "-o", str(binary), "-lm"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"host build failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
    return binary


def row_trace_flags(prefix: str) -> tuple[str, ...]:
    """Extra flags for build_host that make the harness record the pipeline engine's row
    events (see harness.c); the layer trace hook then only marks where each layer ends."""
    P = prefix.upper()
    return (f"-D{P}_TRACE", f"-DTRACE_HOOK={prefix}_trace", f"-D{P}_TRACE_ROWS", "-DHARNESS_TRACE_ROWS",
            f"-DTRACE_ROW_READ_HOOK={prefix}_trace_row_read", f"-DTRACE_ROW_WRITE_HOOK={prefix}_trace_row_write")
