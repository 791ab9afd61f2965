"""The ONNX tests' checks: a C run on the host or under QEMU against ONNX Runtime, and two
compiles proven to be one C.

`run_on_host` and `run_under_qemu` build a generated C once and feed it every input in one
process (one QEMU boot), then `assert_matches_onnxruntime` compares its outputs with ONNX
Runtime's for each model file given: the same C is then a run of each of them."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
from pathlib import Path

import numpy as np

from mnv2gen.compiler import CompileResult, compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.verification import oracle
from mnv2gen.verification.compare import model_inputs, numpy_dtype, same_bytes
from mnv2gen.verification.host import first_differing_onnx_layer, run_c_on_host, verify

PREFIX = "mnv2"
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


def assert_bit_exact_onnx(model_path, out_dir, count: int = 50):
    """`mnv2gen verify`'s path: compile, then `count` random inputs and the two extremes on the host."""
    result = compile_model(model_path)
    write_files(result.files, out_dir)
    report = verify(model_path, result, out_dir, count=count)
    assert report.reference == "onnxruntime" and "ONNX Runtime 1." in report.oracle
    assert report.inputs == count + 2 and report.tflite_aborted == 0
    assert report.matched_tflite == report.inputs, report.first_mismatch
    assert report.distinct_outputs > 1  # the inputs reach the output: equality means something
    return result, report


def assert_same_c(ours: CompileResult, other: CompileResult) -> None:
    """Every generated file byte-identical but for the banner's `Model:` line (the file's name
    and hash): the two models are one C, so a run of it is a run of both."""
    assert ours.files.keys() == other.files.keys()
    for name, text in ours.files.items():
        mine, theirs = _without_model_line(text), _without_model_line(other.files[name])
        assert mine == theirs, f"{name} differs between the two models"


def _without_model_line(text: str) -> list[str]:
    lines = text.splitlines()
    assert "Model: " in lines[1], lines[1]  # the banner's second line names the model file
    return lines[:1] + lines[2:]


def run_on_host(result: CompileResult, c_dir: Path, inputs: np.ndarray) -> np.ndarray:
    """The C built on this machine, every input (the C's form, first axis) run in one process."""
    write_files(result.files, c_dir)
    return run_c_on_host(c_dir, PREFIX, inputs, result.graph.output, sanitize=False)


def run_under_qemu(board: str, result: CompileResult, c_dir: Path, inputs: np.ndarray) -> np.ndarray:
    """The C built for `board` (its options' placement) and every input run in one QEMU boot."""
    from conftest import require_tools
    from mnv2gen.firmware.build import build_firmware
    from mnv2gen.firmware.runner import run_qemu

    require_tools(*QEMU_TOOLS)
    write_files(result.files, c_dir)
    firmware = build_firmware(c_dir, PREFIX, BOARDS[board], c_dir.parent / f"{c_dir.name}_firmware",
                              options=result.options)
    output = result.graph.output
    return run_qemu(firmware, inputs, numpy_dtype(output), output.shape).outputs


def onnxruntime_reference(model_path, result: CompileResult, inputs: np.ndarray) -> np.ndarray:
    """ONNX Runtime's outputs for `inputs` (the C's form), kept in the fixture cache under a hash
    of the model's bytes, the inputs' and ONNX Runtime's version (one process computes them,
    others wait for them)."""
    from model_zoo import cache_dir

    output = result.graph.output
    fed, dtype = model_inputs(result.graph, inputs), numpy_dtype(output)
    key = hashlib.sha256(Path(model_path).read_bytes() + fed.tobytes() + repr(
        (output.shape, dtype.str, importlib.metadata.version("onnxruntime"))).encode()).hexdigest()[:24]
    folder = cache_dir() / "onnx" / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npy"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            theirs = _onnxruntime_outputs(model_path, result, inputs)
            partial = folder / f"{key}.{os.getpid()}.partial.npy"
            np.save(partial, theirs)
            partial.replace(path)
    return np.load(path)


def _onnxruntime_outputs(model_path, result: CompileResult, inputs: np.ndarray) -> np.ndarray:
    output = result.graph.output
    theirs = oracle.onnxruntime_outputs(model_path, model_inputs(result.graph, inputs), output.shape,
                                        numpy_dtype(output))
    assert theirs.ran.all(), theirs.info
    return theirs.outputs


def assert_matches_onnxruntime(model_path, result: CompileResult, inputs: np.ndarray, ours: np.ndarray,
                               where: str, c_dir: Path | None = None,
                               reference: np.ndarray | None = None) -> np.ndarray:
    """`ours` (the C's outputs for `inputs`, run `where`) byte-identical to ONNX Runtime's for the
    model at `model_path` (run now, or its `reference` outputs for these inputs), on every
    input; returns ONNX Runtime's. With the host's `c_dir`, a mismatch names the first layer
    that differs."""
    theirs = _onnxruntime_outputs(model_path, result, inputs) if reference is None else reference
    assert theirs.shape == ours.shape and len(theirs) == len(inputs)
    same = same_bytes(ours, theirs)
    if not same.all():
        first = int(np.argmin(same))
        detail = "" if c_dir is None else "; " + first_differing_onnx_layer(model_path, result, c_dir,
                                                                             inputs[first], PREFIX)
        raise AssertionError(f"{Path(model_path).name} on {where}: {len(same) - same.sum()} of {len(same)} "
                             f"inputs differ from ONNX Runtime, first input {first}{detail}")
    return theirs
