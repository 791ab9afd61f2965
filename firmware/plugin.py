"""Build the QEMU instruction-count plugin (insn_count.c) with the host compiler, once.

The shared object is cached under $XDG_CACHE_HOME/mnv2gen (~/.cache/mnv2gen), named by a
hash of its source and of the build command, so an edited plugin is rebuilt and parallel
runs (pytest -n) share one build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from ..verification.harness import find_compiler
from .build import firmware_file

FLAGS = ["-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
         # Export only qemu_plugin_install and qemu_plugin_version; the qemu_plugin_* API
         # functions stay undefined and resolve against the QEMU binary when it loads us.
         "-fvisibility=hidden"]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnv2gen"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home (some CI sandboxes)
        base = Path(tempfile.gettempdir()) / f"mnv2gen-{os.getuid()}"
        base.mkdir(exist_ok=True)
    return base


def plugin_path() -> Path:
    source = firmware_file("insn_count.c")
    compiler = find_compiler()
    key = hashlib.sha256(source.read_bytes() + " ".join([compiler, *FLAGS]).encode()).hexdigest()[:16]
    target = cache_dir() / f"insn_count-{key}.so"
    if target.exists():
        return target
    # Build beside the target, then rename: atomic, so a concurrent run never loads half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        command = [compiler, *FLAGS, str(source), "-o", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"QEMU plugin build failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
