"""The compile pipeline as one function: model file -> IR -> passes -> plan -> C files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import ir
from .codegen.render import Options, render
from .frontend import load_model
from .passes import run_passes
from .plan.arena import ArenaPlan, plan_arena


@dataclass
class CompileResult:
    graph: ir.Graph
    plan: ArenaPlan
    files: dict[str, str]

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes


def compile_model(model_path: str | Path, options: Options | None = None) -> CompileResult:
    options = options or Options()
    graph = run_passes(load_model(model_path))
    plan = plan_arena(graph)
    return CompileResult(graph=graph, plan=plan, files=render(graph, plan, options))


def write_files(files: dict[str, str], out_dir: str | Path) -> list[Path]:
    """Write the generated files, leaving anything else in the folder alone."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        path = out / name
        path.write_text(text, encoding="ascii")
        written.append(path)
    return written
