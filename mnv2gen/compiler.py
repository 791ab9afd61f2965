"""The compile pipeline as one function: model file -> IR -> passes -> plan -> C files."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import ir
from .codegen.kernels import Variant
from .codegen.render import Options, render
from .errors import UserError
from .frontend import load_model
from .passes import run_passes
from .plan.arena import ArenaPlan, plan_arena
from .plan.bound import paper_bound


@dataclass
class CompileResult:
    graph: ir.Graph
    plan: ArenaPlan
    files: dict[str, str]
    paper_bound: int = 0  # the MobileNetV2 paper's M(G) of the model
    paper_bound_op: str = ""  # the op that sets it
    model_ops: int = 0  # the model's ops, before fusion gathers them into steps (plan.steps)

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes


def compile_model(model_path: str | Path, options: Options | None = None) -> CompileResult:
    options = options or Options()
    loaded = load_model(model_path, options.reference)
    if loaded.arithmetic is ir.Arithmetic.ONNXRUNTIME:
        options = _portable_kernels(options, model_path)
    bound, where = paper_bound(loaded)
    model_ops = len(loaded.ops)
    graph = run_passes(loaded, options.optimize)
    plan = plan_arena(graph)
    if options.memory_budget is not None and plan.arena_bytes > options.memory_budget:
        raise UserError(
            f"the planned arena is {plan.arena_bytes:,} bytes, over the budget of "
            f"{options.memory_budget:,} bytes (the paper's bound for this model is {bound:,}); "
            + ("try --optimize memory" if options.optimize != "memory" else
               "no schedule mnv2gen knows fits: raise the budget or use a smaller model"),
            source=str(model_path))
    return CompileResult(graph=graph, plan=plan, files=render(graph, plan, options), paper_bound=bound,
                         paper_bound_op=where.describe() if where else "", model_ops=model_ops)


def _portable_kernels(options: Options, model_path) -> Options:
    """ONNX Runtime's arithmetic has portable kernels only, so far: every core gets them (the
    banner says so), and asking for the SIMD ones is refused."""
    if options.kernels not in (None, Variant.REF.value):
        raise UserError(f"ONNX models have portable kernels only so far, not --kernels {options.kernels}",
                        source=str(model_path))
    return replace(options, kernels=None) if options.target == "host" else replace(options, kernels=Variant.REF.value)


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
