"""`mnv2gen demo`: the whole story on the trained digits model, in one command.

Compile the model, prove the C bit-exact on the host (and on an emulated Cortex-M4 when the
Arm toolchain and QEMU are installed), run the C over the held-out test images and show
its accuracy beside the .tflite's, then the memory beside TFLite Micro's and the paper's
bound, and the code and weight sizes. The test images come quantized in an .npz beside the
model, so neither scikit-learn nor TensorFlow's data pipeline is needed; TensorFlow runs
only as the oracle.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codegen.render import Options
from ..compiler import CompileResult, compile_model, write_files
from ..errors import UserError
from ..host_sim.build import build_host
from ..host_sim.runner import run_host
from ..verification import oracle
from ..verification.compare import numpy_dtype
from ..verification.harness import find_compiler
from ..verification.host import verify
from .camera import CameraResult, format_camera, predictions, run_camera
from .memory import memory_report

# Shipped in the package (mnv2gen/demo_data is the repository's models/ folder), so the demo
# runs from any folder of a checkout or an installed wheel.
DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
DEFAULT_MODEL = DEMO_DATA / "mobilenet_v2_035_96_digits.tflite"
TEST_SET_NAME = "digits_test.npz"  # beside the model: x (int8, N x H x W x 1), y (labels)
BOARD = "mps2-an386"  # Cortex-M4, emulated by QEMU
CHUNK = 40  # test images per host run: progress between chunks


class Progress:
    """One line per stage on stderr, with the elapsed time ticking on a terminal, so the
    minutes spent in TensorFlow or QEMU never look like a hang. Silent when disabled."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled, self.stream = enabled, stream or sys.stderr  # the stderr of now, not of import time
        self.live = enabled and self.stream.isatty()
        self.text, self.detail = "", ""

    def _write(self, line: str, end: str = "") -> None:
        self.stream.write(("\r\033[K" if self.live else "") + line + end)
        self.stream.flush()

    @contextlib.contextmanager
    def stage(self, text: str):
        start, stop = time.perf_counter(), threading.Event()
        self.text, self.detail = text, ""
        if self.enabled:
            self._write(f"{text} ...", "" if self.live else "\n")
        ticker = threading.Thread(target=self._tick, args=(start, stop), daemon=True)
        if self.live:
            ticker.start()
        try:
            yield self
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()
        if self.enabled:
            self._write(f"{text} ... done in {time.perf_counter() - start:.1f} s", "\n")

    def update(self, detail: str) -> None:
        """A count inside the current stage (e.g. "120/360 images")."""
        self.detail = detail
        if self.live:
            self._write(f"{self.text} ... {detail}")

    def _tick(self, start: float, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            detail = f"{self.detail}, " if self.detail else ""
            self._write(f"{self.text} ... {detail}{time.perf_counter() - start:.0f} s")


@dataclass
class DemoResult:
    model: str
    out: str
    host_inputs: int = 0
    host_matched: int = 0
    tflm_matched: int | None = None
    tflm_arena_bytes: int | None = None
    tflm_activation_bytes: int | None = None
    firmware: dict | None = None  # run_on_board's summary, when the toolchain and QEMU exist
    firmware_note: str = ""
    test_images: int = 0
    c_accuracy: float = 0.0
    tflite_accuracy: float = 0.0
    test_outputs_identical: int = 0
    arena_bytes: int = 0
    paper_bound_bytes: int = 0
    paper_bound_op: str = ""
    sizes: dict = field(default_factory=dict)
    sizes_source: str = ""
    camera: CameraResult | None = None  # --camera: the streamed builds (camera.py)

    @property
    def ok(self) -> bool:
        firmware_ok = self.firmware is None or self.firmware.get("bit_exact") is not False
        return (self.host_matched == self.host_inputs and firmware_ok
                and self.test_outputs_identical == self.test_images and self.c_accuracy == self.tflite_accuracy
                and (self.camera is None or self.camera.ok))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "ok": self.ok} | (
            {"camera": {**asdict(self.camera), "ok": self.camera.ok}} if self.camera else {})


def demo_inputs(model: str | None, tests: str | None) -> tuple[str, str]:
    """The model and test set the demo will read (the shipped ones by default), both checked
    to exist before any work."""
    model_path = Path(model) if model else DEFAULT_MODEL
    if not model_path.is_file():
        raise UserError("the demo model is missing" + ("" if model else ": reinstall mnv2gen") + "; pass "
                        "--model FILE", source=str(model_path))
    tests_path = Path(tests) if tests else model_path.parent / TEST_SET_NAME
    if not tests_path.is_file():
        raise UserError(f"the demo's test images are missing: pass --tests FILE, an .npz with x (int8 "
                        "images) and y (labels); tools/train_default_model.py writes one", source=str(tests_path))
    return str(model_path), str(tests_path)


def read_test_set(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (int8, N x H x W x C) and labels (N) of a test set .npz, checked."""
    expected = "expected an .npz with x (int8 images, N x height x width x channels) and y (N integer labels)"
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise UserError(f"not a test set ({type(exc).__name__}): {expected}", source=str(path)) from None
    if x.dtype != np.int8 or x.ndim != 4 or not len(x) or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"x is {x.dtype} {list(x.shape)} and y {y.dtype} {list(y.shape)}: {expected}",
                        source=str(path))
    return x, y


def load_test_set(path: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The quantized test images as model inputs (N, *input_shape), and their labels. The file
    stores one grey channel; the model's channels are copies of it."""
    x, y = read_test_set(path)
    channels = input_shape[-1]
    if x.ndim != len(input_shape) or x.shape[1:-1] != tuple(input_shape[1:-1]) or x.shape[-1] not in (1, channels):
        raise UserError(f"the images are {list(x.shape[1:])}; the model's input is {list(input_shape[1:])} "
                        "(or one channel of it)", source=str(path))
    images = np.repeat(x, channels // x.shape[-1], axis=-1).reshape(len(x), *input_shape)
    return np.ascontiguousarray(images), y.astype(np.int64)


def run_c(c_dir: Path, result: CompileResult, inputs: np.ndarray, progress: Progress) -> np.ndarray:
    """Run the generated C, built for the host, over every input, a chunk at a time."""
    out = result.graph.output
    with tempfile.TemporaryDirectory(prefix="mnv2gen-demo-") as tmp:
        binary = build_host(c_dir, "mnv2", Path(tmp) / "model")
        outputs = []
        for start in range(0, len(inputs), CHUNK):
            outputs.append(run_host(binary, inputs[start:start + CHUNK], numpy_dtype(out), out.shape))
            progress.update(f"{start + len(outputs[-1])}/{len(inputs)} images")
    return np.concatenate(outputs)


def host_sizes(c_dir: Path) -> dict[str, int]:
    """Code and constants of the generated C compiled for the host at -O2 (objects, no link):
    the weights are the read-only data of *_weights.c; the other constants, the rest (the
    model's layer parameters, the kernels' tables)."""
    sizes = {"code_bytes": 0, "weights_bytes": 0, "other_constants_bytes": 0}
    if shutil.which("size") is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="mnv2gen-sizes-") as tmp:
        for source in sorted(c_dir.glob("*.c")):
            obj = Path(tmp) / f"{source.stem}.o"
            subprocess.run([find_compiler(), "-std=c99", "-O2", "-c", str(source), "-o", str(obj)],
                           check=True, capture_output=True)
            listing = subprocess.run(["size", "-A", str(obj)], check=True, capture_output=True, text=True).stdout
            for name, size in re.findall(r"^(\.\S+)\s+(\d+)", listing, re.MULTILINE):
                if name.startswith(".text"):
                    sizes["code_bytes"] += int(size)
                elif name.startswith(".rodata"):
                    key = "weights_bytes" if source.stem.endswith("_weights") else "other_constants_bytes"
                    sizes[key] += int(size)
    return sizes


def _firmware_tools_present() -> bool:
    return all(shutil.which(tool) for tool in ("arm-none-eabi-gcc", "qemu-system-arm"))


def _verify_on_board(model: str, out: Path, inputs: int, progress: Progress, demo: DemoResult) -> None:
    from ..firmware.boards import get_board
    from ..firmware.runner import FirmwareFailed
    from ..verification.board import run_on_board

    board = get_board(BOARD)
    with progress.stage(f"building for {board.core} and running {inputs + 2} inputs under QEMU ({board.name})"):
        result = compile_model(model, Options(target=board.core))
        c_dir = out / board.core
        write_files(result.files, c_dir)
        try:
            report = run_on_board(model, result, c_dir, board, count=inputs, per_layer=False)
        except FirmwareFailed as exc:
            demo.firmware, demo.firmware_note = {"bit_exact": False}, f"the firmware failed: {exc}"
            return
    demo.firmware = report.summary()


def run_demo(model: str | None = None, tests: str | None = None, out: str = "build/demo", *,
             inputs: int = 20, firmware: bool = True, camera: bool = False,
             progress: Progress | None = None) -> DemoResult:
    progress = progress or Progress(False)
    model, tests = demo_inputs(model, tests)
    read_test_set(Path(tests))  # a bad test set is refused before minutes of work
    model_path, out_dir = Path(model), Path(out)
    demo = DemoResult(model=str(model_path), out=str(out_dir / "host"))
    with progress.stage(f"compiling {model_path.name}"):
        result = compile_model(model_path, Options())
        write_files(result.files, out_dir / "host")
    test_x, test_y = load_test_set(Path(tests), result.graph.input.shape)

    with progress.stage(f"verifying on the host: {inputs + 2} inputs against TFLite and TFLite Micro"):
        check = verify(model_path, result, out_dir / "host", count=inputs)
    demo.host_inputs, demo.host_matched, demo.tflm_matched = check.inputs, check.matched_tflite, check.matched_tflm
    demo.tflm_arena_bytes = check.tflm_arena.get("arena_total_bytes")
    demo.tflm_activation_bytes = check.tflm_arena.get("arena_head_bytes")

    if not firmware:
        demo.firmware_note = "skipped (--no-firmware)"
    elif not _firmware_tools_present():
        demo.firmware_note = ("skipped: needs arm-none-eabi-gcc and qemu-system-arm "
                              "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
    else:
        _verify_on_board(str(model_path), out_dir, max(1, inputs // 4), progress, demo)

    with progress.stage(f"running the generated C over {len(test_x)} held-out test images"):
        ours = run_c(out_dir / "host", result, test_x, progress)
    with progress.stage(f"running the .tflite (TFLite reference kernels) over {len(test_x)} test images"):
        out_t = result.graph.output
        theirs = oracle.reference_outputs(model_path, test_x, out_t.shape, numpy_dtype(out_t))
    demo.test_images = len(test_x)
    demo.c_accuracy = float(np.mean(predictions(ours) == test_y))
    demo.tflite_accuracy = float(np.mean(predictions(theirs.outputs) == test_y))
    demo.test_outputs_identical = int(sum(a.tobytes() == b.tobytes() and ran
                                          for a, b, ran in zip(ours, theirs.outputs, theirs.ran)))

    if camera:
        from ..firmware.boards import get_board

        board = get_board(BOARD) if firmware and _firmware_tools_present() else None
        demo.camera = run_camera(model_path, out_dir, result, ours, test_x, test_y, run_c, progress,
                                 board=board, board_inputs=max(1, inputs // 4))

    with progress.stage("planning memory for every schedule"):
        memory = memory_report(model_path, Options(), with_tflm=False)  # TFLite Micro ran in verify
    demo.arena_bytes, demo.paper_bound_bytes = memory.arena_bytes, memory.paper_bound_bytes
    demo.paper_bound_op = memory.paper_bound_op
    if demo.firmware and "flash_bytes" in demo.firmware:
        fw = demo.firmware
        demo.sizes = {"code_bytes": fw["text_bytes"], "weights_bytes": fw["weights_bytes"],
                      "other_constants_bytes": fw["code_bytes"] - fw["text_bytes"]}
        demo.sizes_source = f"the {BOARD} firmware: Cortex-M4, -O2, with its test harness"
    else:
        with progress.stage("measuring code and weight sizes (host objects)"):
            demo.sizes = host_sizes(out_dir / "host")
        demo.sizes_source = "the generated C compiled for the host at -O2"
    return demo


def format_demo(demo: DemoResult) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.2f}%"

    host = f"{demo.host_matched}/{demo.host_inputs} random inputs identical to TFLite's reference kernels"
    if demo.tflm_matched is not None:
        host += f" (TFLite Micro: {demo.tflm_matched}/{demo.host_inputs})"
    lines = [f"mnv2gen demo: {demo.model} -> {demo.out}", "",
             f"bit-exact on the host:   {host}"]
    fw = demo.firmware
    if fw and fw.get("inputs"):
        lines.append(f"bit-exact on Cortex-M4:  {fw['matched_reference']}/{fw['inputs']} inputs identical under QEMU "
                     f"({fw['board']}); {fw['instructions_per_inference']:,} instructions per inference")
    else:
        lines.append(f"bit-exact on Cortex-M4:  {demo.firmware_note or 'not run'}")
    equal = "equal" if demo.c_accuracy == demo.tflite_accuracy else "DIFFERENT"
    lines += [f"held-out test images:    {demo.test_images}; accuracy of the generated C {pct(demo.c_accuracy)}, "
              f"of the .tflite {pct(demo.tflite_accuracy)} ({equal}; "
              f"{demo.test_outputs_identical}/{demo.test_images} outputs byte-identical)", "",
              f"RAM   arena {demo.arena_bytes:,} B (all activations, input and output)"]
    if demo.tflm_arena_bytes:
        lines.append(f"      TFLite Micro's arena {demo.tflm_arena_bytes:,} B: ours is "
                     f"{demo.arena_bytes / demo.tflm_arena_bytes:.2f}x")
    lines.append(f"      MobileNetV2 paper's bound {demo.paper_bound_bytes:,} B (set by {demo.paper_bound_op})")
    if demo.sizes:
        sizes = demo.sizes
        lines.append(f"flash weights {sizes['weights_bytes']:,} B, code {sizes['code_bytes']:,} B, other constants "
                     f"{sizes['other_constants_bytes']:,} B (from {demo.sizes_source})")
    if demo.camera:
        lines += [""] + format_camera(demo.camera, pct)
    lines += ["", "OK: bit-exact, same accuracy" if demo.ok else "MISMATCH"]
    return "\n".join(lines)
