"""The reference we must equal: TensorFlow Lite's interpreter with its reference kernels.

TensorFlow is imported only here and only when called, so `mnv2gen compile` never loads it.
`tf.lite.Interpreter` is deprecated in favour of the ai-edge-litert package; everything goes
through `_interpreter()`, so switching is a one-function change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from .errors import UserError


# TensorFlow's start-up chatter (oneDNN notices, absl warnings) would drown our output.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _interpreter(model_path: str | Path, preserve_all_tensors: bool = False):
    for key, value in QUIET_TF.items():
        os.environ.setdefault(key, value)
    import warnings

    try:
        import tensorflow as tf
    except ImportError:
        raise UserError("verification needs TensorFlow: pip install 'mnv2gen[verify]' "
                        "(or tensorflow-cpu)") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of tf.lite.Interpreter
        interpreter = tf.lite.Interpreter(
            model_path=str(model_path),
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
    interpreter.allocate_tensors()
    return interpreter


def reference_outputs(model_path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Run every input (first axis) through TFLite's reference kernels."""
    interpreter = _interpreter(model_path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).copy())
    return np.stack(results)


def reference_tensors(model_path: str | Path, single_input: np.ndarray) -> dict[int, np.ndarray]:
    """Every tensor of one inference, by tensor index (for the layer-by-layer diff)."""
    interpreter = _interpreter(model_path, preserve_all_tensors=True)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], single_input.reshape(inp["shape"]))
    interpreter.invoke()
    tensors = {}
    for detail in interpreter.get_tensor_details():
        try:
            tensors[detail["index"]] = interpreter.get_tensor(detail["index"]).copy()
        except ValueError:
            continue  # tensors without data (e.g. optional inputs)
    return tensors


_TFLM_SCRIPT = r"""
import sys, json, numpy as np
from tflite_micro.python.tflite_micro import runtime
model_path, inputs_path, outputs_path = sys.argv[1:4]
inputs = np.load(inputs_path)
interpreter = runtime.Interpreter.from_file(model_path, arena_size=16 * 1024 * 1024)
outputs = []
for x in inputs:
    interpreter.set_input(x.reshape(interpreter.get_input_details(0)["shape"]), 0)
    interpreter.invoke()
    outputs.append(interpreter.get_output(0).copy())
np.save(outputs_path, np.stack(outputs))
interpreter.print_allocations()  # the recording allocator's figures, parsed by the caller
"""

# "[RecordingMicroAllocator] Arena allocation total 218192 bytes" (and "head" = activations).
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def tflm_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        return False


def tflm_outputs(model_path: str | Path, inputs: np.ndarray, workdir: str | Path) -> tuple[np.ndarray | None, dict]:
    """Run TFLite Micro's interpreter in a subprocess (it aborts the process on some models).
    Returns (outputs or None, info) where info holds the arena size or the failure."""
    workdir = Path(workdir)
    inputs_path, outputs_path = workdir / "tflm_inputs.npy", workdir / "tflm_outputs.npy"
    np.save(inputs_path, inputs)
    result = subprocess.run(
        [sys.executable, "-c", _TFLM_SCRIPT, str(model_path), str(inputs_path), str(outputs_path)],
        capture_output=True, text=True, timeout=3600,
        env={**os.environ, **QUIET_TF},
    )
    if result.returncode != 0:
        return None, {"error": f"TFLite Micro exited with {result.returncode}: {result.stderr.strip()[-300:]}"}
    info = {f"arena_{kind}_bytes": int(n) for kind, n in _ARENA_LINE.findall(result.stdout + result.stderr)}
    return np.load(outputs_path), info
