"""The memory report: per step of the schedule, what is live, the rings inside fused
pipelines, the MobileNetV2 paper's bound, our arena and TFLite Micro's, what each
`--optimize` level costs in arena bytes and MACs, and the schedule of each way the input can
reach the arena (a whole frame, or --input rows), side by side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .. import ir
from ..codegen.render import Options
from ..compiler import PlannedModel, plan_graph
from ..errors import UserError
from ..frontend import load_model
from ..passes import OPTIMIZE_LEVELS, OptimizeLevel
from ..plan.streaming import InputMode


@dataclass
class StepRow:
    step: int
    what: str
    macs: int
    live_bytes: int  # every buffer live during the step, before any overlap
    ring_bytes: int  # ring buffers inside the step's pipeline (its scratch)
    inputs_bytes: int
    output_bytes: int
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)
    weight_bytes: int = 0  # constants in flash: weights and biases as the model stores them
    input_offsets: list[int] = field(default_factory=list)  # arena offsets of the inputs
    output_offset: int = 0


@dataclass
class ScheduleRow:
    optimize: str
    arena_bytes: int
    macs: int


@dataclass
class InputSchedule:
    """The schedule when the input arrives as `input` ("frame": written whole; "rows":
    streamed), at the report's --optimize level; `note` says why there is none."""

    input: str
    arena_bytes: int = 0
    macs: int = 0
    steps: list[StepRow] = field(default_factory=list)
    note: str = ""


@dataclass
class MemoryReport:
    model: str
    optimize: str
    arena_bytes: int
    paper_bound_bytes: int
    paper_bound_op: str
    tflm_arena_bytes: int | None
    tflm_activation_bytes: int | None
    macs: int
    steps: list[StepRow] = field(default_factory=list)
    schedules: list[ScheduleRow] = field(default_factory=list)
    input: str = "frame"  # --input: "rows" streams it, so the arena holds no frame
    inputs: list[InputSchedule] = field(default_factory=list)  # frame, then rows: side by side

    def to_dict(self) -> dict:
        return asdict(self)


def _step_rows(result: PlannedModel) -> list[StepRow]:
    plan = result.plan
    rows = []
    for number, op in enumerate(plan.steps):
        rings = [plan.lifetimes.of(t) for t in op.internal_tensors()] if isinstance(op, ir.RowPipeline) else []
        inputs = op.activation_inputs()
        rows.append(StepRow(
            step=number, what=op.describe(), macs=op.macs(), live_bytes=plan.live_bytes(number),
            ring_bytes=sum(b.nbytes for b in rings),
            inputs_bytes=sum(t.nbytes for t in inputs), output_bytes=op.output.nbytes,
            input_shapes=[list(t.shape) for t in inputs], output_shape=list(op.output.shape),
            weight_bytes=sum(t.nbytes for t in op.constants()),
            input_offsets=[plan.offset(t) for t in inputs], output_offset=plan.offset(op.output)))
    return rows


def _tflm_arena(model_path, graph: ir.Graph) -> tuple[int | None, int | None]:
    """TFLite Micro's arena for this model, if its package is installed (no TensorFlow needed)."""
    from ..verification import oracle
    from ..verification.compare import make_inputs

    if not oracle.tflm_available():
        return None, None
    run = oracle.tflm_outputs(model_path, make_inputs(graph, 1)[:1], graph.output.shape,
                              graph.output.dtype.numpy_type)
    return run.info.get("arena_total_bytes"), run.info.get("arena_head_bytes")


def _input_schedules(loaded: ir.Graph, options: Options, result: PlannedModel,
                     result_steps: list[StepRow]) -> list[InputSchedule]:
    """The frame schedule and the streamed one (--input rows, with the preprocessing the
    options give; the frame takes none), one of them `result` (its steps already drawn)."""
    schedules = []
    for mode in InputMode:
        planned, steps = result, result_steps
        if mode is not options.input:
            preprocessing = ("input_format", "normalize", "input_scale_from", "input_resize")
            drop = dict.fromkeys(preprocessing) if mode is InputMode.FRAME else {}  # a frame takes none
            other = replace(options, input=mode, memory_budget=None, **drop)
            try:
                planned = plan_graph(loaded, other)
            except UserError as exc:  # a model whose input cannot stream: say why
                schedules.append(InputSchedule(str(mode), note=str(exc)))
                continue
            steps = _step_rows(planned)
        schedules.append(InputSchedule(str(mode), planned.arena_bytes, sum(op.macs() for op in planned.plan.steps),
                                       steps))
    return schedules


def memory_report(model_path, options: Options, with_tflm: bool = True) -> MemoryReport:
    # Planned, not compiled: the report needs the plans and their figures, not the C. One
    # load serves every level (the passes leave the loaded graph as it was).
    loaded = load_model(model_path, options.reference)
    result = plan_graph(loaded, options)
    tflm_total, tflm_head = _tflm_arena(model_path, result.graph) if with_tflm else (None, None)
    schedules = []
    for level in OPTIMIZE_LEVELS:
        other = result if level == options.optimize else plan_graph(
            loaded, replace(options, optimize=level, memory_budget=None))
        schedules.append(ScheduleRow(level, other.arena_bytes, sum(op.macs() for op in other.plan.steps)))
    steps = _step_rows(result)
    return MemoryReport(
        model=str(model_path), optimize=options.optimize, arena_bytes=result.arena_bytes,
        paper_bound_bytes=result.paper_bound, paper_bound_op=result.paper_bound_op,
        tflm_arena_bytes=tflm_total, tflm_activation_bytes=tflm_head,
        macs=sum(op.macs() for op in result.plan.steps), steps=steps, schedules=schedules,
        input=str(options.input), inputs=_input_schedules(loaded, options, result, steps))


def format_report(report: MemoryReport) -> str:
    streamed = ", --input rows" if report.input == "rows" else ""
    lines = [f"model: {report.model} (--optimize {report.optimize}{streamed})", "",
             f"{'step':>4}  {'live B':>9}  {'rings B':>8}  {'MACs':>12}  what"]
    for row in report.steps:
        over = "*" if row.live_bytes > report.arena_bytes else " "
        lines.append(f"{row.step:>4}  {row.live_bytes:>9,}{over} {row.ring_bytes:>8,}  {row.macs:>12,}  {row.what}")
    if any(row.live_bytes > report.arena_bytes for row in report.steps):
        lines.append("   * live bytes over the arena: the step's output is written over the part of its "
                     "input it has finished reading, so the two share bytes"
                     + ("; or (--input rows) rings never busy at the same time share theirs"
                        if report.input == "rows" else ""))
    lines += ["", f"arena (MNV2_ARENA_BYTES):      {report.arena_bytes:>9,} B",
              f"paper bound M(G):              {report.paper_bound_bytes:>9,} B  ({report.paper_bound_op})"]
    if report.tflm_arena_bytes:
        lines.append(f"TFLite Micro arena:            {report.tflm_arena_bytes:>9,} B  "
                     f"({report.tflm_activation_bytes:,} activations); ours is "
                     f"{report.arena_bytes / report.tflm_arena_bytes:.2f}x")
    lines += ["", "schedules (all bit-exact):", f"  {'optimize':<9} {'arena B':>9} {'MACs':>13}  MAC overhead"]
    baseline = next(s.macs for s in report.schedules if s.optimize == OptimizeLevel.SPEED)
    for s in report.schedules:
        lines.append(f"  {s.optimize:<9} {s.arena_bytes:>9,} {s.macs:>13,}  {100 * (s.macs / baseline - 1):+.1f}%")
    return "\n".join(lines + _format_inputs(report.inputs))


def _format_inputs(inputs: list[InputSchedule]) -> list[str]:
    """The frame and streamed schedules' totals, then their live bytes step by step, side by side."""
    lines = ["", f"input (--optimize as above): {'arena B':>9} {'MACs':>13}  steps"]
    for s in inputs:
        lines.append(f"  {s.input:<26} {s.arena_bytes:>9,} {s.macs:>13,}  {len(s.steps)}" if not s.note
                     else f"  {s.input:<26} none: {s.note}")
    shown = [s for s in inputs if not s.note]
    if len(shown) < 2:
        return lines
    lines += ["", "live B per step, side by side:", "  step" + "".join(f"  {s.input:>12}" for s in shown)]
    for i in range(max(len(s.steps) for s in shown)):
        cells = [f"{s.steps[i].live_bytes:>12,}" if i < len(s.steps) else " " * 12 for s in shown]
        lines.append(f"  {i:>4}" + "".join(f"  {cell}" for cell in cells))
    return lines
