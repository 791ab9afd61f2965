"""The compile pipeline: model file -> IR -> passes -> plan (`plan_model`), then -> C files
(`compile_model`). Reports that need the plan and its figures stop before rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import ir
from .codegen.kernels import staged_input_words
from .codegen.render import Options, kernel_variant, preprocess_of, render
from .errors import UserError
from .frontend import load_model
from .passes import OptimizeLevel, run_passes
from .passes.quantized_input import take_quantized_input
from .plan.arena import ArenaPlan, plan_arena
from .plan.bound import paper_bound
from .preprocess import Preprocess


@dataclass
class PlannedModel:
    graph: ir.Graph
    plan: ArenaPlan
    paper_bound: int = 0  # the MobileNetV2 paper's M(G) of the model
    paper_bound_op: str = ""  # the op that sets it
    model_ops: int = 0  # the model's ops, before fusion gathers them into steps (plan.steps)

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes


@dataclass
class CompileResult(PlannedModel):
    files: dict[str, str] = field(default_factory=dict)
    preprocess: Preprocess | None = None  # what fill delivers (--input-format), None: the model's input
    options: Options = field(default_factory=Options)  # what the C was generated with


def plan_graph(loaded: ir.Graph, options: Options) -> PlannedModel:
    """Schedule and place a loaded model. The passes leave `loaded` as it was, so one load
    can be planned at several optimize levels."""
    if options.quantized_input:
        loaded = take_quantized_input(loaded)
    preprocess = preprocess_of(options)
    sensor = preprocess.sensor_rows(loaded.input) if preprocess is not None else None
    passed = run_passes(loaded, options.optimize, options.input, sensor)
    bound, where = paper_bound(passed.bottlenecks)
    variant = kernel_variant(options)
    plan = plan_arena(passed.scheduled, input_mode=options.input, sensor=sensor,
                      scratch_words=lambda op: staged_input_words(op, variant))
    if options.memory_budget is not None and plan.arena_bytes > options.memory_budget:
        raise UserError(
            f"the planned arena is {plan.arena_bytes:,} bytes, over the budget of "
            f"{options.memory_budget:,} bytes (the paper's bound for this model is {bound:,}); "
            + ("try --optimize memory" if options.optimize != OptimizeLevel.MEMORY else
               "no schedule mnv2gen knows fits: raise the budget or use a smaller model"),
            source=loaded.source)
    return PlannedModel(graph=passed.scheduled, plan=plan, paper_bound=bound,
                        paper_bound_op=where.describe() if where else "", model_ops=len(loaded.ops))


def plan_model(model_path: str | Path, options: Options | None = None) -> PlannedModel:
    options = options or Options()
    return plan_graph(load_model(model_path, options.reference), options)


def compile_model(model_path: str | Path, options: Options | None = None) -> CompileResult:
    options = options or Options()
    planned = plan_model(model_path, options)
    preprocess = preprocess_of(options)
    if preprocess is not None:
        try:
            preprocess.check(planned.graph.input)
        except ValueError as exc:
            raise UserError(str(exc), source=str(model_path)) from None
    return CompileResult(**vars(planned), files=render(planned.graph, planned.plan, options), preprocess=preprocess,
                         options=options)


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
