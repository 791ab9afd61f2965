"""What the host and firmware harnesses share: which C compiler builds for the host, and
how a harness finds the generated API under any --prefix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..codegen.render import ArenaMode
from ..errors import UserError


def find_compiler(preferred: str | None = None) -> str:
    for name in [preferred or os.environ.get("CC", ""), "cc", "gcc", "clang"]:
        if name and shutil.which(name):
            return name
    raise UserError("no C compiler found (tried $CC, cc, gcc, clang); install gcc")


def streams_input(c_dir: str | Path, prefix: str) -> bool:
    """Whether the C in `c_dir` was generated with --input rows: its header then declares
    <prefix>_run_rows() instead of <prefix>_input() and <prefix>_run(). Read from the header,
    so every harness drives whichever API the C it builds has."""
    header = Path(c_dir) / f"{prefix}_model.h"
    return f"int {prefix}_run_rows(" in header.read_text(encoding="ascii")


def model_defines(prefix: str, trace: bool, rows: bool = False, external_arena: bool = False) -> list[str]:
    """How a harness (host or firmware) finds the generated API under any --prefix. With
    `rows` (C generated with --input rows) the harness keeps each input frame outside the
    arena and hands its rows to <prefix>_run_rows() from a fill function; with
    `external_arena` (C generated with --arena external), it hands the model its arena."""
    P = prefix.upper()
    defines = [
        f'-DMODEL_HEADER="{prefix}_model.h"',
        f"-DMODEL_INPUT={prefix}_input", f"-DMODEL_RUN={prefix}_run",
        f"-DMODEL_OUTPUT={prefix}_output",
        f"-DMODEL_INPUT_BYTES={P}_INPUT_BYTES", f"-DMODEL_OUTPUT_BYTES={P}_OUTPUT_BYTES",
    ]
    if rows:
        defines += [f"-DMODEL_RUN_ROWS={prefix}_run_rows", f"-DMODEL_ROW_T={prefix}_row_t",
                    f"-DMODEL_INPUT_ROWS={P}_INPUT_ROWS",
                    f"-DMODEL_INPUT_ROW_BYTES={P}_INPUT_ROW_BYTES",
                    f"-DMODEL_INPUT_MAX_FILL_ROWS={P}_INPUT_MAX_FILL_ROWS"]
    if external_arena:
        defines += [f"-DMODEL_SET_ARENA={prefix}_set_arena", f"-DMODEL_ARENA_BUFFER_BYTES={P}_ARENA_BUFFER_BYTES"]
    if trace:
        # Not -DTRACE: the generated model.c defines a TRACE() macro of its own.
        defines += ["-DHARNESS_TRACE", f"-D{P}_TRACE", f"-DTRACE_HOOK={prefix}_trace"]
    return defines


def takes_external_arena(result) -> bool:
    """Whether the compiled C (a CompileResult) wants its arena from the harness."""
    return result.options.arena is ArenaMode.EXTERNAL
