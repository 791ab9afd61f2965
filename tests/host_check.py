"""Build a compiled model once and compare batches of inputs with TFLite, byte for byte.

Shared by tests/test_sanitize_zoo.py (every fixture under ASan/UBSan with the debug
canaries) and bench/soak.py (10,000 inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnv2gen.verification import oracle
from mnv2gen.compiler import CompileResult, compile_model, write_files
from mnv2gen.host_sim.build import build_host
from mnv2gen.host_sim.runner import run_host
from mnv2gen.verification.compare import all_identical, make_inputs, numpy_dtype, same_bytes

DEBUG_CANARIES = ("-DMNV2_DEBUG_CANARIES",)


@dataclass
class Tally:
    inputs: int = 0
    matched: int = 0
    aborted: int = 0  # inputs TFLite itself died on: no reference, not counted as matched

    def add(self, other: "Tally") -> None:
        self.inputs += other.inputs
        self.matched += other.matched
        self.aborted += other.aborted

    @property
    def bit_exact(self) -> bool:
        return all_identical(self.inputs, self.matched, self.aborted)


class HostModel:
    """A model compiled and built once; `compare` runs any number of input batches."""

    def __init__(self, model_path: Path, workdir: Path, *, sanitize: bool = False,
                 extra_flags: tuple[str, ...] = DEBUG_CANARIES):
        self.model_path = model_path
        self.result: CompileResult = compile_model(model_path)
        out = workdir / "c"
        write_files(self.result.files, out)
        self.binary = build_host(out, "mnv2", workdir / "model", sanitize=sanitize, extra_flags=extra_flags)
        output = self.result.graph.output
        self.out_dtype, self.out_shape = numpy_dtype(output), output.shape

    def inputs(self, count: int, seed: int) -> np.ndarray:
        return make_inputs(self.result.graph, count, seed)

    def compare(self, inputs: np.ndarray) -> Tally:
        ours = run_host(self.binary, inputs, self.out_dtype, self.out_shape)
        expected = oracle.reference_outputs(self.model_path, inputs, self.out_shape, self.out_dtype)
        matched = same_bytes(ours, expected.outputs) & expected.ran
        return Tally(inputs=len(inputs), matched=int(matched.sum()), aborted=expected.aborted)
