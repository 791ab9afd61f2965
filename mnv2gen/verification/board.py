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

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..codegen.render import comment_text
from ..compiler import CompileResult
from ..errors import UserError
from ..firmware.boards import Board, Console
from ..firmware.build import Firmware, build_firmware, firmware_sizes
from ..firmware.runner import FLASH_WAIT_STATES, QemuRun, run_qemu
from ..firmware.usart import run_usart
from . import oracle
from .compare import all_identical, make_inputs, model_inputs, numpy_dtype, same_bytes

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
    # per input, the same on a flash of FLASH_WAIT_STATES wait states without a cache
    cycles_estimate_m4_wait_states: list[int] = field(default_factory=list)
    layers: list[LayerCount] = field(default_factory=list)
    layers_note: str = ""  # why there is no per-layer breakdown, if there is none
    images: list[Path] = field(default_factory=list)  # a flashable board's .elf, .bin, .hex, kept

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
            **({"stand_in": self.board.stand_in} if self.board.stand_in else {}),
            "bit_exact": self.bit_exact,
            "inputs": self.inputs,
            "reference": self.reference,
            "matched_reference": self.matched,
            "reference_aborted": self.reference_aborted,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_min": min(self.instructions, default=None),
            # The cost table models a Cortex-M4; on other cores the figure would mislead.
            "cycles_estimate_m4": max(self.cycles_estimate_m4, default=None) if is_m4 else None,
            "flash_wait_states": FLASH_WAIT_STATES,
            "cycles_estimate_m4_wait_states": max(self.cycles_estimate_m4_wait_states, default=None)
            if is_m4 else None,
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
        if self.images:
            summary["images"] = [str(path) for path in self.images]
        return summary


def run_on_board(model_path: str | Path, result: CompileResult, c_dir: str | Path, board: Board, *,
                 count: int = 10, seed: int = 0, prefix: str = "mnv2", per_layer: bool = True,
                 reference: str = "tflite", image_dir: str | Path | None = None) -> FirmwareReport:
    """Build for `board`; if QEMU emulates it, run `count` random inputs plus the all-min and
    all-max ones and compare them with the reference the C was compiled to equal ("tflite":
    TFLite's reference kernels, or "tflm": TFLite Micro). Boards without an emulator only get
    the build, which fails with a UserError when the model does not fit. A flashable board's
    image (the first, if the inputs needed several) is copied to `image_dir` if given."""
    inputs = make_inputs(result.graph, count, seed)
    fed = inputs  # what the C is given: the model's input, or (--input-format) sensor pixels
    if result.preprocess is not None:
        fed = result.preprocess.random_frames(result.graph.input, count, seed)
        inputs = result.preprocess.reference(fed, result.graph.input)
    with tempfile.TemporaryDirectory(prefix="mnv2gen-firmware-") as tmp:
        if result.graph.arithmetic is ir.Arithmetic.ONNXRUNTIME:
            reference = "onnxruntime"
        if board.console is Console.USART:
            firmware, run = _run_linked(c_dir, prefix, board, Path(tmp), result, fed)
        else:
            firmware = build_firmware(c_dir, prefix, board, tmp, options=result.options)
            run = _run(firmware, result, fed) if board.runnable else None
        report = FirmwareReport(board=board, sizes=firmware_sizes(firmware), arena_bytes=result.arena_bytes,
                                reference=reference)
        if image_dir is not None and board.flashable:
            report.images = _keep_images(firmware, Path(image_dir), f"{prefix}_{board.name}")
        if run is None:
            return report
        report.inputs = len(inputs)
        report.matched, report.reference_aborted = _compare(model_path, model_inputs(result.graph, inputs),
                                                            run.outputs, reference)
        report.stack_bytes = run.stack_bytes
        report.instructions = [span.instructions for span in run.runs]
        report.cycles_estimate_m4 = [span.cycles for span in run.runs]
        report.cycles_estimate_m4_wait_states = [span.cycles_at(FLASH_WAIT_STATES) for span in run.runs]
        if per_layer:
            traced = build_firmware(c_dir, prefix, board, tmp, trace=True, inputs=fed[:1], options=result.options)
            _add_layers(report, _run(traced, result, fed[:1], f"{prefix}_trace"), result.plan.steps)
    return report


# The test inputs a USART board's image holds at a time (they share its flash with the model).
LINKED_INPUT_BYTES = 96 * 1024


def _run_linked(c_dir, prefix: str, board: Board, workdir: Path, result: CompileResult,
                inputs: np.ndarray) -> tuple[Firmware, QemuRun]:
    """Run the inputs in images of at most LINKED_INPUT_BYTES of them each (rebuilt in turn in
    `workdir`, only the inputs recompiled); return the first image, kept, and every run merged."""
    per_image = max(1, LINKED_INPUT_BYTES // max(1, inputs[0].nbytes))
    first, runs = None, []
    for start in range(0, len(inputs), per_image):
        batch = inputs[start:start + per_image]
        firmware = build_firmware(c_dir, prefix, board, workdir, inputs=batch, options=result.options)
        if first is None:
            paths = _keep_images(firmware, workdir / "first", "firmware")
            first = dataclasses.replace(firmware, elf=paths[0])
        runs.append(_run(firmware, result, batch))
    merged = QemuRun(outputs=np.concatenate([r.outputs for r in runs]),
                     runs=[span for r in runs for span in r.runs],
                     layers=[spans for r in runs for spans in r.layers],
                     tails=[span for r in runs for span in r.tails],
                     stack_bytes=max(r.stack_bytes for r in runs))
    return first, merged


def _keep_images(firmware: Firmware, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for suffix in (".elf", ".bin", ".hex"):
        kept.append(folder / f"{stem}{suffix}")
        shutil.copyfile(firmware.elf.with_suffix(suffix), kept[-1])
    return kept


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
    output = result.graph.output
    if firmware.board.console is Console.USART:  # the inputs are in the image
        return run_usart(firmware, len(inputs), numpy_dtype(output), output.shape, trace_hook=trace_hook)
    return run_qemu(firmware, inputs, numpy_dtype(output), output.shape, trace_hook=trace_hook)


def _add_layers(report: FirmwareReport, traced: QemuRun, steps) -> None:
    """The traced build calls its hook after every step of the schedule, in order: the k-th
    span is step k's (model.c's layer k)."""
    spans = traced.layers[0]
    if len(spans) != len(steps):
        report.layers_note = (f"the trace hook ran {len(spans)} times for {len(steps)} layers, "
                              "so the counts cannot be matched to layers")
        return
    report.layers = [LayerCount(number, comment_text(step.describe(), 120), span.instructions, span.cycles,
                                step.macs())
                     for number, (step, span) in enumerate(zip(steps, spans))]
