"""Build generated C with the host compiler, together with the harness."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError

WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def find_compiler(preferred: str | None = None) -> str:
    for name in [preferred or os.environ.get("CC", ""), "cc", "gcc", "clang"]:
        if name and shutil.which(name):
            return name
    raise UserError("no C compiler found (tried $CC, cc, gcc, clang); install gcc")


def harness_source() -> Path:
    return Path(str(importlib.resources.files("mnv2gen.host_sim").joinpath("harness.c")))


def model_defines(prefix: str, trace: bool) -> list[str]:
    """How a harness (host or firmware) finds the generated API under any --prefix."""
    P = prefix.upper()
    defines = [
        f'-DMODEL_HEADER="{prefix}_model.h"',
        f"-DMODEL_INPUT={prefix}_input", f"-DMODEL_RUN={prefix}_run",
        f"-DMODEL_OUTPUT={prefix}_output",
        f"-DMODEL_INPUT_BYTES={P}_INPUT_BYTES", f"-DMODEL_OUTPUT_BYTES={P}_OUTPUT_BYTES",
    ]
    if trace:
        # Not -DTRACE: the generated model.c defines a TRACE() macro of its own.
        defines += ["-DHARNESS_TRACE", f"-D{P}_TRACE", f"-DTRACE_HOOK={prefix}_trace"]
    return defines


def build_host(c_dir: str | Path, prefix: str, binary: str | Path, *, trace: bool = False,
               sanitize: bool = False, compiler: str | None = None, opt: str = "-O2",
               extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile every .c of `c_dir` plus the harness into `binary`; `extra_flags` go to the
    compiler as they are (e.g. the generated C's -D<PREFIX>_DEBUG_CANARIES)."""
    c_dir, binary = Path(c_dir), Path(binary)
    sources = sorted(str(p) for p in c_dir.glob("*.c")) + [str(harness_source())]
    command = [find_compiler(compiler), opt, *WARNINGS, *(SANITIZERS if sanitize else []), *extra_flags,
               "-I", str(c_dir), *model_defines(prefix, trace), *sources, "-o", str(binary)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"host build failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
    return binary
