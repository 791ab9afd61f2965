"""The references we must equal: TensorFlow Lite's interpreter with its reference kernels
for a .tflite, ONNX Runtime's CPU execution provider (pinned, x86-64 with AVX2) for an .onnx.

The interpreters are imported only here and only when called, so `mnv2gen compile` never
loads TensorFlow or ONNX Runtime. Everything goes through `_interpreter()`, which takes LiteRT's
(ai-edge-litert, the successor of the deprecated `tf.lite.Interpreter`) when installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError


# TensorFlow's start-up chatter (oneDNN notices, absl warnings) would drown our output.
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _interpreter_classes():
    """TFLite's Python interpreter and its resolver enum: from the ai-edge-litert package
    (LiteRT, the same kernels, and it imports in a fraction of a second) when installed,
    else from TensorFlow. MNV2GEN_ORACLE=tensorflow forces TensorFlow's."""
    if os.environ.get("MNV2GEN_ORACLE") != "tensorflow":
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            return Interpreter, OpResolverType
        except ImportError:
            pass
    for key, value in QUIET_TF.items():
        os.environ.setdefault(key, value)
    try:
        import tensorflow as tf
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType


INSTALL_HINT = ("verification needs TFLite's interpreter, which is not installed: "
                "pip install 'mnv2gen[verify]' (ai-edge-litert or tensorflow-cpu)")
TFLM_INSTALL_HINT = "TFLite Micro is not installed: pip install tflite-micro"


def require_tflite() -> None:
    """Fail at once, before any compiling, when no TFLite interpreter is installed."""
    import importlib.util

    if not any(importlib.util.find_spec(name) for name in ("ai_edge_litert", "tensorflow")):
        raise UserError(INSTALL_HINT)


def require_tflm(why: str = "--reference tflm") -> None:
    if not tflm_available():
        raise UserError(f"{why} needs TFLite Micro, which is not installed: pip install tflite-micro")


def _interpreter(model_path: str | Path, preserve_all_tensors: bool = False):
    import warnings

    interpreter_class, resolver = _interpreter_classes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of tf.lite.Interpreter
        interpreter = interpreter_class(
            model_path=str(model_path),
            experimental_op_resolver_type=resolver.BUILTIN_REF,
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
    interpreter.allocate_tensors()
    return interpreter


@dataclass
class ReferenceRun:
    """Outputs of a reference engine; `ran[i]` is False where the engine aborted on input i
    (TFLite's reference SOFTMAX asserts on some flat inputs; TFLite Micro on some models)."""

    outputs: np.ndarray
    ran: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def aborted(self) -> int:
        return int((~self.ran).sum())


def reference_outputs(model_path: str | Path, inputs: np.ndarray, output_shape, output_dtype) -> ReferenceRun:
    """Run every input (first axis) through TFLite's reference kernels, in a subprocess."""
    return _run_engine("tflite", model_path, inputs, output_shape, output_dtype)


def tflm_outputs(model_path: str | Path, inputs: np.ndarray, output_shape, output_dtype) -> ReferenceRun:
    """Run every input through TFLite Micro's interpreter, in a subprocess; `info` holds its
    recorded arena figures."""
    return _run_engine("tflm", model_path, inputs, output_shape, output_dtype)


MAX_RESTARTS = 8


def _run_engine(engine: str, model_path, inputs: np.ndarray, output_shape, output_dtype) -> ReferenceRun:
    """Feed inputs to a worker process that appends each output to a file as soon as it has
    it. If the worker dies, the input it was on is marked as not run and a new worker takes
    the rest, so one abort costs one input, not the comparison."""
    output_dtype = np.dtype(output_dtype)
    per_output = int(np.prod(output_shape)) * output_dtype.itemsize
    outputs = np.zeros((len(inputs), *output_shape), dtype=output_dtype)
    ran = np.zeros(len(inputs), dtype=bool)
    info: dict = {}
    start = restarts = 0
    with tempfile.TemporaryDirectory(prefix="mnv2gen-oracle-") as tmp:
        while start < len(inputs):
            inputs_path, outputs_path = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.bin"
            np.save(inputs_path, inputs[start:])
            outputs_path.write_bytes(b"")
            result = subprocess.run(
                [sys.executable, "-m", "mnv2gen.verification.oracle", engine, str(model_path), str(inputs_path),
                 str(outputs_path)],
                capture_output=True, text=True, timeout=3600, env={**os.environ, **QUIET_TF})
            data = outputs_path.read_bytes()
            done = len(data) // per_output
            outputs[start:start + done] = np.frombuffer(data[:done * per_output], output_dtype).reshape(
                (done, *output_shape))
            ran[start:start + done] = True
            info.update({f"arena_{kind}_bytes": int(n) for kind, n in _ARENA_LINE.findall(result.stdout + result.stderr)})
            if result.returncode == 0:
                break
            if result.returncode in (WORKER_USER_ERROR, WORKER_CANNOT_LOAD):
                message = _worker_message(result.stderr)
                if result.returncode == WORKER_USER_ERROR:  # e.g. the engine is not installed
                    raise UserError(message)
                info["error"] = message  # the engine refuses the model itself: no input can run
                break
            restarts += 1
            if restarts > MAX_RESTARTS:  # it cannot run this model at all
                info["error"] = f"{engine} died {restarts} times: {result.stderr.strip()[-300:]}"
                break
            start += done + 1  # skip the input it died on
    return ReferenceRun(outputs=outputs, ran=ran, info=info)


# The worker's exit codes besides 0 and a crash, with a one-line message on stderr after
# WORKER_MARK: the parent turns them into a UserError or a note, never a "mismatch".
WORKER_USER_ERROR = 2  # it could not start (no interpreter installed)
WORKER_CANNOT_LOAD = 3  # the engine refused to load the model
WORKER_MARK = "mnv2gen-oracle: "


def _worker_message(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(WORKER_MARK)]
    return lines[-1][len(WORKER_MARK):] if lines else stderr.strip()[-300:]


def _worker_main(engine: str, model_path: str, inputs_path: str, outputs_path: str) -> int:
    try:
        run = _load_engine(engine, model_path)
    except UserError as exc:
        print(f"{WORKER_MARK}{exc}", file=sys.stderr)
        return WORKER_USER_ERROR
    except (ValueError, RuntimeError) as exc:  # what the interpreters raise on a model they refuse
        message = " ".join(str(exc).split())[-300:]
        print(f"{WORKER_MARK}{ENGINE_NAMES[engine]} cannot load the model: {message}", file=sys.stderr)
        return WORKER_CANNOT_LOAD
    _run_all(run, np.load(inputs_path), outputs_path)
    if engine == "tflm":
        run.interpreter.print_allocations()  # the recording allocator's figures, parsed by the caller
    return 0


ENGINE_NAMES = {"tflite": "TFLite's interpreter", "tflm": "TFLite Micro", "onnxruntime": "ONNX Runtime"}

# ONNX Runtime's session, as verify uses it for an ONNX model. Its integer results are the
# x86-64 CPU provider's with AVX2 (other CPUs take other kernels with other roundings). On
# CPUs without VNNI its u8 x s8 products may saturate unless x64quantprecision is set, which
# only uint8 activations take (with it ORT has no int8 QGemm). QDQ models with int8
# activations stay partly float on x86 unless qdqisint8allowed is set.
UINT8_SESSION_CONFIG = {"session.x64quantprecision": "1"}
INT8_SESSION_CONFIG = {"session.qdqisint8allowed": "1"}


def ort_session_config(model_path: str | Path) -> dict[str, str]:
    """The session config entries for this model: by the type of its quantized activations
    (its graph's first QuantizeLinear's zero point)."""
    from ..frontend.onnx import activation_type

    return dict(UINT8_SESSION_CONFIG if activation_type(model_path) == "uint8" else INT8_SESSION_CONFIG)
ORT_INSTALL_HINT = "verifying an ONNX model needs ONNX Runtime: pip install 'mnv2gen[verify]'"


def ort_description(model_path: str | Path) -> str:
    """Which ONNX Runtime and session options verify compares against (for its report)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        raise UserError(ORT_INSTALL_HINT) from None
    options = "".join(f", {k}={v}" for k, v in ort_session_config(model_path).items())
    return f"ONNX Runtime {version}, CPU execution provider, all graph optimizations{options}"


def require_onnxruntime() -> None:
    """Refuse, before any work, where ONNX Runtime's own integer results are not the ones
    the C reproduces: no onnxruntime, not x86-64, or no AVX2."""
    import importlib.util
    import platform

    if importlib.util.find_spec("onnxruntime") is None:
        raise UserError(ORT_INSTALL_HINT)
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise UserError(f"ONNX Runtime on {platform.machine()} rounds with other kernels than the x86-64 ones "
                        "the C equals; verify ONNX models on an x86-64 host with AVX2")
    if not _cpu_has_avx2():
        raise UserError("this CPU has no AVX2: ONNX Runtime then takes kernels that round differently from the "
                        "ones the C equals; verify ONNX models on an x86-64 host with AVX2")


def _cpu_has_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"^flags\s*:.*\bavx2\b", flags, re.MULTILINE) is not None


def onnxruntime_outputs(model_path: str | Path, inputs: np.ndarray, output_shape, output_dtype) -> ReferenceRun:
    """Run every input through ONNX Runtime's CPU provider, in a subprocess."""
    return _run_engine("onnxruntime", model_path, inputs, output_shape, output_dtype)


def _load_engine(engine: str, model_path: str):
    """A function running one input through `engine`, with the interpreter as its attribute."""
    if engine == "onnxruntime":
        return _ort_session(model_path)
    if engine == "tflite":
        interpreter = _interpreter(model_path)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

        def run(x):
            interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])
    else:
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise UserError(TFLM_INSTALL_HINT) from None

        interpreter = runtime.Interpreter.from_file(model_path, arena_size=16 * 1024 * 1024)

        def run(x):
            interpreter.set_input(x.reshape(interpreter.get_input_details(0)["shape"]), 0)
            interpreter.invoke()
            return interpreter.get_output(0)
    run.interpreter = interpreter
    return run


def _ort_session(model_path: str, model_bytes: bytes | None = None):
    """A function running one input through ONNX Runtime with verify's session options for
    the model at `model_path` (or, given, for these bytes of an edited copy of it)."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(ORT_INSTALL_HINT) from None
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in ort_session_config(model_path).items():
        options.add_session_config_entry(key, value)
    try:
        session = onnxruntime.InferenceSession(model_bytes if model_bytes is not None else model_path, options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception classes, which do not derive from one
        raise RuntimeError(str(exc)) from None
    name = session.get_inputs()[0].name

    def run(x):
        return session.run(None, {name: x})[0]
    run.interpreter = session
    return run


def _run_all(run, inputs: np.ndarray, outputs_path: str) -> None:
    with open(outputs_path, "ab", buffering=0) as sink:
        for x in inputs:
            sink.write(np.ascontiguousarray(run(x)).tobytes())


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


def onnxruntime_tensors(model_path: str | Path, single_input: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The named tensors of one inference in ONNX Runtime, with the session verify uses (for
    the layer-by-layer diff of a QOperator model: its integer nodes are ONNX Runtime's own
    kernels whatever the graph exposes, so naming their outputs changes no arithmetic)."""
    import onnx

    model = onnx.load(str(model_path))
    exposed = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names
                              if name not in exposed)
    session = _ort_session(str(model_path), model.SerializeToString()).interpreter  # external data loaded
    values = session.run(names, {session.get_inputs()[0].name: single_input})
    return dict(zip(names, values))


# "[RecordingMicroAllocator] Arena allocation total 218192 bytes" (and "head" = activations).
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def tflm_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(_worker_main(*sys.argv[1:5]))
