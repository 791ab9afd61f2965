"""Prove the generated C equal to TFLite: build on the host, run many inputs, compare bytes.

On a mismatch, rebuild with tracing and name the first layer whose output differs from the
same tensor in TFLite's interpreter (with all intermediate tensors preserved).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ir, oracle
from .compiler import CompileResult
from .host_sim.build import build_host
from .host_sim.runner import run_host, trace_host


@dataclass
class VerifyReport:
    inputs: int
    matched_tflite: int
    matched_tflm: int | None = None  # None: TFLite Micro not run
    tflm_note: str = ""
    tflm_arena: dict = field(default_factory=dict)  # TFLite Micro's recorded arena figures
    first_mismatch: str = ""  # which layer differs first, for the first failing input

    @property
    def bit_exact(self) -> bool:
        tflm_ok = self.matched_tflm is None or self.matched_tflm == self.inputs
        return self.matched_tflite == self.inputs and tflm_ok


def _numpy_dtype(t: ir.Tensor) -> np.dtype:
    return np.dtype(ir.DTYPES[t.dtype][0])


def make_inputs(graph: ir.Graph, count: int, seed: int = 0) -> np.ndarray:
    """`count` random inputs plus the two extremes (all minimum, all maximum)."""
    t = graph.input
    rng = np.random.default_rng(seed)
    shape = (count, *t.shape)
    if t.dtype == "float32":
        # Span the range the first QUANTIZE can represent, and a little beyond it.
        low, high = _float_input_range(graph)
        random = rng.uniform(low * 1.1, high * 1.1, size=shape).astype(np.float32)
        extremes = np.stack([np.full(t.shape, low, np.float32), np.full(t.shape, high, np.float32)])
    else:
        info = np.iinfo(_numpy_dtype(t))
        random = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(_numpy_dtype(t))
        extremes = np.stack([np.full(t.shape, info.min, _numpy_dtype(t)), np.full(t.shape, info.max, _numpy_dtype(t))])
    return np.concatenate([random, extremes])


def _float_input_range(graph: ir.Graph) -> tuple[float, float]:
    consumer = next((op for op in graph.ops if op.input is graph.input), None)
    if consumer is not None and consumer.output.quant is not None:
        q = consumer.output
        return q.scale * (-128 - q.zero_point), q.scale * (127 - q.zero_point)
    return -1.0, 1.0


def _same_bytes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per input (first axis): are the bytes identical? (Bitwise, so float NaNs compare too.)"""
    a = np.ascontiguousarray(a).reshape(len(a), -1).view(np.uint8)
    b = np.ascontiguousarray(b).reshape(len(b), -1).view(np.uint8)
    return (a == b).all(axis=1)


def verify(model_path: str | Path, result: CompileResult, c_dir: str | Path, *, count: int = 100,
           seed: int = 0, use_tflm: bool = True, sanitize: bool = False, prefix: str = "mnv2") -> VerifyReport:
    graph = result.graph
    inputs = make_inputs(graph, count, seed)
    out_dtype, out_shape = _numpy_dtype(graph.output), graph.output.shape
    with tempfile.TemporaryDirectory(prefix="mnv2gen-verify-") as tmp:
        binary = build_host(c_dir, prefix, Path(tmp) / "model", sanitize=sanitize)
        ours = run_host(binary, inputs, out_dtype, out_shape)
        expected = oracle.reference_outputs(model_path, inputs).reshape(ours.shape)
        matches = _same_bytes(ours, expected)
        report = VerifyReport(inputs=len(inputs), matched_tflite=int(matches.sum()))
        if use_tflm and oracle.tflm_available():
            tflm, info = oracle.tflm_outputs(model_path, inputs, tmp)
            if tflm is None:
                report.tflm_note = info.get("error", "TFLite Micro failed")
            else:
                report.matched_tflm = int(_same_bytes(ours, tflm.reshape(ours.shape)).sum())
                report.tflm_arena = info
        elif use_tflm:
            report.tflm_note = "tflite-micro is not installed; compared with TFLite only"
        if not matches.all():
            first_bad = int(np.argmin(matches))
            report.first_mismatch = first_differing_layer(model_path, result, c_dir, inputs[first_bad],
                                                          Path(tmp), prefix)
    return report


def first_differing_layer(model_path, result: CompileResult, c_dir, single_input: np.ndarray,
                          workdir: Path, prefix: str) -> str:
    """Name the first layer whose output differs from TFLite's tensor of the same index."""
    binary = build_host(c_dir, prefix, workdir / "model_trace", trace=True, opt="-O1")
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
