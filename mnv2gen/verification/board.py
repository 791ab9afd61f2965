"""Prove the generated C bit-exact on emulated Cortex-M cores, and measure it there.

`run_on_board()` cross-builds the C with the firmware harness for a board, runs N inputs under
QEMU, compares every output with TFLite's reference kernels (ONNX Runtime for an ONNX
model), and reports what a firmware
engineer asks first: flash (weights apart from code), RAM (arena, stack high-water mark) and
executed instructions per inference, exact, from our QEMU plugin.

The per-layer breakdown comes from a second build whose model calls a trace hook after every
layer, run on one input; the instructions and the bit-exactness are those of the untraced
build, the firmware one would ship.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..compiler import CompileResult
from ..errors import UserError
from ..firmware.boards import Board
from ..firmware.build import build_firmware, firmware_sizes
from ..firmware.runner import QemuRun, run_qemu
from . import oracle
from .compare import all_identical, make_inputs, numpy_dtype, same_bytes

# The generated model.c names each layer in a comment, and its run function calls TRACE()
# after each: the k-th call of the trace hook is the k-th TRACE(...) line.
_LAYER_COMMENT = re.compile(r"^/\* Layer (\d+): (.*)$", re.MULTILINE)
_TRACE_CALL = re.compile(r"^\s*TRACE\((\d+),", re.MULTILINE)


@dataclass
class LayerCount:
    layer: int
    op: str
    instructions: int
    cycles_estimate_m4: int
    macs: int = 0  # of the step, to show instructions per MAC

@dataclass
class FirmwareReport:
    board: Board
    sizes: dict[str, int]
    arena_bytes: int
    reference: str = "tflite"  # whose outputs ours are compared with: "tflite", "tflm" or "onnxruntime"
    inputs: int = 0
    matched: int | None = None  # None: nothing run (the board has no emulator)
    reference_aborted: int = 0  # inputs the reference engine died on: not comparable, not counted
    stack_bytes: int | None = None
    instructions: list[int] = field(default_factory=list)  # per input, exact
    cycles_estimate_m4: list[int] = field(default_factory=list)  # per input
    layers: list[LayerCount] = field(default_factory=list)
    layers_note: str = ""  # why there is no per-layer breakdown, if there is none

    @property
    def bit_exact(self) -> bool | None:
        """None when nothing ran; as verify's: every input the reference ran is identical."""
        if self.matched is None:
            return None
        return all_identical(self.inputs, self.matched, self.reference_aborted)

    @property
    def instructions_per_inference(self) -> int | None:
        """The most any input took (inputs differ by a few instructions in data-dependent
        branches, e.g. saturation)."""
        return max(self.instructions, default=None)

    def summary(self) -> dict:
        """The report as one JSON-ready dict."""
        is_m4 = self.board.core == "cortex-m4"
        summary = {
            "board": self.board.name,
            "core": self.board.core,
            "bit_exact": self.bit_exact,
            "inputs": self.inputs,
            "reference": self.reference,
            "matched_reference": self.matched,
            "reference_aborted": self.reference_aborted,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_min": min(self.instructions, default=None),
            # The cost table models a Cortex-M4; on other cores the figure would mislead.
            "cycles_estimate_m4": max(self.cycles_estimate_m4, default=None) if is_m4 else None,
            **self.sizes,
            "arena_bytes": self.arena_bytes,
            "stack_bytes": self.stack_bytes,
        }
        if self.layers:
            summary["layers"] = [
                {"layer": l.layer, "op": l.op, "instructions": l.instructions,
                 **({"cycles_estimate_m4": l.cycles_estimate_m4} if is_m4 else {})}
                for l in self.layers]
        elif self.layers_note:
            summary["layers_note"] = self.layers_note
        return summary


def run_on_board(model_path: str | Path, result: CompileResult, c_dir: str | Path, board: Board, *,
                 count: int = 10, seed: int = 0, prefix: str = "mnv2", per_layer: bool = True,
                 reference: str = "tflite") -> FirmwareReport:
    """Build for `board`; if QEMU emulates it, run `count` random inputs plus the all-min and
    all-max ones and compare them with the reference the C was compiled to equal ("tflite":
    TFLite's reference kernels, or "tflm": TFLite Micro). Boards without an emulator only get
    the build, which fails with a UserError when the model does not fit."""
    with tempfile.TemporaryDirectory(prefix="mnv2gen-firmware-") as tmp:
        firmware = build_firmware(c_dir, prefix, board, tmp)
        if result.graph.arithmetic is ir.Arithmetic.ONNXRUNTIME:
            reference = "onnxruntime"
        report = FirmwareReport(board=board, sizes=firmware_sizes(firmware), arena_bytes=result.arena_bytes,
                                reference=reference)
        if not board.runnable:
            return report
        inputs = make_inputs(result.graph, count, seed)
        run = _run(firmware, result, inputs)
        report.inputs = len(inputs)
        report.matched, report.reference_aborted = _compare(model_path, inputs, run.outputs, reference)
        report.stack_bytes = run.stack_bytes
        report.instructions = [span.instructions for span in run.runs]
        report.cycles_estimate_m4 = [span.cycles for span in run.runs]
        if per_layer:
            traced = build_firmware(c_dir, prefix, board, tmp, trace=True)
            _add_layers(report, Path(c_dir), prefix, _run(traced, result, inputs[:1], f"{prefix}_trace"),
                        result.plan.steps)
    return report


def _compare(model_path, inputs: np.ndarray, ours: np.ndarray, reference: str) -> tuple[int, int]:
    """(inputs identical to the reference, inputs on which the reference engine aborted)."""
    if reference == "tflm":
        oracle.require_tflm()
    engines = {"tflm": oracle.tflm_outputs, "onnxruntime": oracle.onnxruntime_outputs}
    engine = engines.get(reference, oracle.reference_outputs)
    expected = engine(model_path, inputs, ours.shape[1:], ours.dtype)
    if "error" in expected.info:
        raise UserError(f"the reference ({reference}) could not run the model: {expected.info['error']}")
    return int((same_bytes(ours, expected.outputs) & expected.ran).sum()), expected.aborted


def _run(firmware, result: CompileResult, inputs, trace_hook: str | None = None) -> QemuRun:
    graph = result.graph
    return run_qemu(firmware, inputs, numpy_dtype(graph.output), graph.output.shape, trace_hook=trace_hook)


def _add_layers(report: FirmwareReport, c_dir: Path, prefix: str, traced: QemuRun, steps) -> None:
    model_c = (c_dir / f"{prefix}_model.c").read_text()
    names = dict(_LAYER_COMMENT.findall(model_c))
    numbers = _TRACE_CALL.findall(model_c)
    spans = traced.layers[0]
    if len(spans) != len(numbers):
        report.layers_note = (f"the trace hook ran {len(spans)} times for {len(numbers)} TRACE() calls, "
                              "so the counts cannot be matched to layers")
        return
    report.layers = [LayerCount(int(n), names.get(n, ""), s.instructions, s.cycles, steps[int(n)].macs())
                     for n, s in zip(numbers, spans)]
