"""Prove the generated C equal to TFLite (or, for an ONNX model, to ONNX Runtime): build on
the host, run many inputs, compare bytes.

On a mismatch, rebuild with tracing and name the first layer whose output differs from the
same tensor in TFLite's interpreter (with all intermediate tensors preserved).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..compiler import CompileResult
from ..errors import UserError
from ..host_sim.build import build_host
from ..host_sim.runner import run_host, trace_host
from . import oracle
from .compare import all_identical, make_inputs, model_inputs, numpy_dtype, same_bytes
from .harness import takes_external_arena


@dataclass
class VerifyReport:
    inputs: int
    matched_tflite: int
    matched_tflm: int | None = None  # None: TFLite Micro not run
    reference: str = "tflite"  # the engine the C was compiled to equal
    tflm_note: str = ""
    tflite_aborted: int = 0  # inputs on which the engine died (not comparable, not counted)
    tflm_aborted: int = 0
    tflm_arena: dict = field(default_factory=dict)  # TFLite Micro's recorded arena figures
    first_mismatch: str = ""  # which layer differs first, for the first failing input
    tflite_note: str = ""  # why TFLite's reference kernels were not compared (they refuse the model)
    distinct_outputs: int = 0  # different outputs of the C over all inputs; 1: the model ignores its input
    oracle: str = ""  # for ONNX models (reference "onnxruntime"): the ONNX Runtime and session compared with

    @property
    def compared(self) -> int:
        """Inputs on which the chosen reference produced an output to compare with."""
        if self.reference != "tflm":  # TFLite, or ONNX Runtime for an ONNX model (in matched_tflite)
            return self.inputs - self.tflite_aborted if not self.tflite_note else 0
        return self.inputs - self.tflm_aborted if self.matched_tflm is not None else 0

    @property
    def warnings(self) -> list[str]:
        if self.distinct_outputs == 1 and self.inputs > 1:
            return [f"all {self.inputs} inputs gave the same output: the model ignores its input (dead "
                    "or degenerate weights?), so identical outputs prove little about the C"]
        return []

    @property
    def bit_exact(self) -> bool:
        """Identical to the chosen reference on every input. Where the two references
        disagree with each other (see `divergence_note`), only the chosen one can be met."""
        if self.reference != "tflm":
            return all_identical(self.inputs, self.matched_tflite, self.tflite_aborted)
        return self.matched_tflm is not None and all_identical(self.inputs, self.matched_tflm, self.tflm_aborted)


def divergence_note(graph: ir.Graph, reference: str) -> str:
    """Why the other reference may differ from ours, if the model has a known divergence."""
    per_channel_fc = any(isinstance(op, ir.FullyConnected) and op.weights.quant.per_channel for op in graph.ops)
    if not per_channel_fc:
        return ""
    other = "TFLite Micro" if reference == "tflite" else "TFLite's reference kernels"
    flag = "tflm" if reference == "tflite" else "tflite"
    return (f"{other} rounds per-channel FULLY_CONNECTED differently (one rounding step instead "
            f"of two, or the reverse); compile with --reference {flag} to equal it instead")


def verify(model_path: str | Path, result: CompileResult, c_dir: str | Path, *, count: int = 100,
           seed: int = 0, use_tflm: bool = True, sanitize: bool = False, prefix: str = "mnv2",
           reference: str = "tflite") -> VerifyReport:
    graph = result.graph
    if graph.arithmetic is ir.Arithmetic.ONNXRUNTIME:
        return _verify_onnx(model_path, result, c_dir, count=count, seed=seed, sanitize=sanitize, prefix=prefix)
    if reference == "tflm":
        oracle.require_tflm()
    use_tflm = use_tflm or reference == "tflm"
    inputs = make_inputs(graph, count, seed)
    fed = inputs  # what the C is given: the model's input, or (--input-format) sensor pixels
    if result.preprocess is not None:
        fed = result.preprocess.random_frames(graph.input, count, seed)
        inputs = result.preprocess.reference(fed, graph.input)  # what TFLite is given
    out_dtype, out_shape = numpy_dtype(graph.output), graph.output.shape
    with tempfile.TemporaryDirectory(prefix="mnv2gen-verify-") as tmp:
        binary = build_host(c_dir, prefix, Path(tmp) / "model", sanitize=sanitize,
                            external_arena=takes_external_arena(result))
        ours = run_host(binary, fed, out_dtype, out_shape)
        expected = oracle.reference_outputs(model_path, inputs, out_shape, out_dtype)
        matches = same_bytes(ours, expected.outputs) & expected.ran
        report = VerifyReport(inputs=len(inputs), matched_tflite=int(matches.sum()), reference=reference,
                              tflite_aborted=expected.aborted, tflite_note=expected.info.get("error", ""),
                              distinct_outputs=len({output.tobytes() for output in ours}))
        if report.tflite_note and reference == "tflite":
            raise UserError(f"{report.tflite_note}; nothing to compare with", source=str(model_path))
        if use_tflm and oracle.tflm_available():
            tflm = oracle.tflm_outputs(model_path, inputs, out_shape, out_dtype)
            report.tflm_arena = tflm.info
            if "error" in tflm.info:
                report.tflm_note = tflm.info["error"]
            else:
                tflm_matches = same_bytes(ours, tflm.outputs) & tflm.ran
                report.matched_tflm = int(tflm_matches.sum())
                report.tflm_aborted = tflm.aborted
                if reference == "tflm":
                    matches = tflm_matches
        elif use_tflm:
            report.tflm_note = "tflite-micro is not installed; compared with TFLite only"
        first_bad = next((i for i in range(len(inputs)) if expected.ran[i] and not matches[i]), None)
        if first_bad is not None and result.preprocess is not None:
            report.first_mismatch = f"input {first_bad} (pixel inputs get no layer-by-layer diff yet)"
        elif first_bad is not None and reference == "tflite":
            report.first_mismatch = first_differing_layer(model_path, result, c_dir, inputs[first_bad],
                                                          Path(tmp), prefix)
    return report


def _verify_onnx(model_path, result: CompileResult, c_dir, *, count: int, seed: int, sanitize: bool,
                 prefix: str) -> VerifyReport:
    """An ONNX model's C against ONNX Runtime (`matched_tflite` then counts its matches:
    the one reference); on a mismatch, the first layer that differs."""
    oracle.require_onnxruntime()
    output = result.graph.output
    inputs = make_inputs(result.graph, count, seed)
    ours = run_c_on_host(c_dir, prefix, inputs, output, sanitize, takes_external_arena(result))
    expected = oracle.onnxruntime_outputs(model_path, model_inputs(result.graph, inputs), output.shape,
                                          numpy_dtype(output))
    if "error" in expected.info:
        raise UserError(f"{expected.info['error']}; nothing to compare with", source=str(model_path))
    matches = same_bytes(ours, expected.outputs) & expected.ran
    report = VerifyReport(inputs=len(inputs), matched_tflite=int(matches.sum()), reference="onnxruntime",
                          tflite_aborted=expected.aborted, oracle=oracle.ort_description(model_path),
                          distinct_outputs=len({output.tobytes() for output in ours}))
    first_bad = next((i for i in range(len(inputs)) if expected.ran[i] and not matches[i]), None)
    if first_bad is not None:
        report.first_mismatch = f"input {first_bad}: " + first_differing_onnx_layer(
            model_path, result, c_dir, inputs[first_bad], prefix)
    return report


def first_differing_onnx_layer(model_path, result: CompileResult, c_dir, c_input: np.ndarray, prefix: str) -> str:
    """Name the first step whose output differs from ONNX Runtime's tensor of the same ONNX
    node (its output named as a graph output, so ONNX Runtime keeps it)."""
    from ..frontend.onnx_model import read_onnx
    from ..frontend.onnx_qdq import is_qdq

    model = read_onnx(Path(model_path))
    if is_qdq(model):
        return ("no layer-by-layer diff for QDQ models (exposing their tensors can change how ONNX Runtime "
                "fuses them): quantize with QuantFormat.QOperator to get one")
    names = {node.position: node.outputs[0] for node in model.nodes}
    steps = [(number, op, names[_last_stage(op).index]) for number, op in enumerate(result.plan.steps)
             if _last_stage(op).index in names]
    with tempfile.TemporaryDirectory(prefix="mnv2gen-verify-") as tmp:
        binary = build_host(c_dir, prefix, Path(tmp) / "model_trace", trace=True, opt="-O1",
                            external_arena=takes_external_arena(result))
        ours = trace_host(binary, c_input)
    oracle_input = model_inputs(result.graph, c_input[np.newaxis])[0]
    theirs = oracle.onnxruntime_tensors(model_path, oracle_input, [name for _, _, name in steps])
    for number, op, name in steps:
        if number not in ours:
            continue
        got, expected = _as_stored(ours[number], op.output), theirs[name]
        if got.shape != expected.shape or got.tobytes() != expected.tobytes():
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64).reshape(got.shape))
            return (f"layer {number} (ONNX node {_last_stage(op).index}, {op.describe()}): "
                    f"{int((diff > 0).sum())} of {diff.size} values differ, max difference {diff.max():g}")
    return "every layer output matches ONNX Runtime; only the final output differs"


def _last_stage(op: ir.Op) -> ir.Op:
    return op.stages[-1] if isinstance(op, ir.RowPipeline) else op


def _as_stored(data: bytes, t: ir.Tensor) -> np.ndarray:
    """A traced output as ONNX Runtime holds the tensor: the stored element type (uint8
    models' int8 shifted back by 128) and NCHW."""
    values = np.frombuffer(data, dtype=numpy_dtype(t)).reshape(t.shape)
    if t.quant is not None and t.quant.model_offset:
        values = (values.astype(np.int16) + t.quant.model_offset).astype(np.uint8)
    return values.transpose(0, 3, 1, 2) if values.ndim == 4 else values


def run_c_on_host(c_dir, prefix: str, inputs: np.ndarray, output: ir.Tensor, sanitize: bool,
                  external_arena: bool = False) -> np.ndarray:
    """Build the C on this machine and run every input through it."""
    with tempfile.TemporaryDirectory(prefix="mnv2gen-verify-") as tmp:
        binary = build_host(c_dir, prefix, Path(tmp) / "model", sanitize=sanitize, external_arena=external_arena)
        return run_host(binary, inputs, numpy_dtype(output), output.shape)


def first_differing_layer(model_path, result: CompileResult, c_dir, single_input: np.ndarray,
                          workdir: Path, prefix: str) -> str:
    """Name the first layer whose output differs from TFLite's tensor of the same index."""
    binary = build_host(c_dir, prefix, workdir / "model_trace", trace=True, opt="-O1",
                        external_arena=takes_external_arena(result))
    ours = trace_host(binary, single_input)
    theirs = oracle.reference_tensors(model_path, single_input)
    for number, op in enumerate(result.plan.steps):
        expected = theirs.get(op.output.index)
        if expected is None or number not in ours:
            continue
        got = np.frombuffer(ours[number], dtype=expected.dtype).reshape(expected.shape)
        if got.tobytes() != expected.tobytes():
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            return (f"layer {number} (model op {op.index}, {op.describe()}): "
                    f"{int((diff > 0).sum())} of {diff.size} values differ, max difference {diff.max():g}")
    return "every layer output matches TFLite; only the final output differs"
