"""`mnv2gen demo --camera`: the streamed flagship (`--input rows`) on the digits test set.

Two builds beside the demo's frame build: one streamed with the identity preprocessing (fill
writes the model's int8 rows: its outputs must be the frame API's, output for output), and
one fed by a simulated camera: each test image as an RGB565 sensor would deliver the scene
at 160x120, which the generated C decodes, resizes (bilinear) to 96x96, normalizes and
quantizes row by row as the network pulls the rows; its outputs must be those of TFLite
run on preprocess.py's reference for the same frames, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codegen.render import Options
from ..compiler import compile_model, write_files
from ..preprocess import PixelFormat, Scale
from ..verification import oracle
from ..verification.compare import numpy_dtype

SENSOR = Scale(160, 120)  # the simulated camera: width, height; bilinear down to the model's input
# The digits model was trained on values in [-1, 1] (models/digits_model.md), its input
# quantized with scale 1/127.5 and zero point -1: a grey level g in 0..255 is (g/127.5)-1.
NORMALIZE = "(x/127.5)-1"
CAMERA = Options(input="rows", input_format="rgb565", normalize=NORMALIZE, input_scale_from=SENSOR)


@dataclass
class CameraResult:
    rows_arena_bytes: int = 0  # --input rows, the identity preprocessing
    rows_outputs_identical: int = 0  # ... against the frame API's outputs
    rows_accuracy: float = 0.0
    camera_arena_bytes: int = 0
    camera_outputs_identical: int = 0  # against TFLite on the reference's int8 input
    camera_accuracy: float = 0.0
    camera_reference_accuracy: float = 0.0
    images: int = 0
    macs_frame: int = 0
    macs_rows: int = 0
    firmware: dict | None = None  # the camera build on the emulated Cortex-M4 (run_on_board's summary)

    @property
    def ok(self) -> bool:
        return (self.rows_outputs_identical == self.camera_outputs_identical == self.images
                and self.macs_frame == self.macs_rows
                and (self.firmware is None or self.firmware.get("bit_exact") is True))


def camera_frames(images: np.ndarray) -> np.ndarray:
    """What the simulated camera delivers for int8 test images [N, (1,) H, W, 1 or more]: the grey
    scene (q + 128) seen at 160x120 (resized by the same fixed-point bilinear the C uses),
    as little-endian RGB565 words [N, 120, 160, 2] (grey g: R5 = G5 = g >> 3, G6 = g >> 2)."""
    images = images.reshape(len(images), *images.shape[-3:])  # the demo's inputs are [N, 1, H, W, C]
    grey = (images[..., :1].astype(np.int16) + 128).astype(np.uint8)
    scene = Scale(*images.shape[1:3][::-1]).resized(grey, SENSOR.height, SENSOR.width)[..., 0].astype(np.uint16)
    words = (scene >> 3) << 11 | (scene >> 2) << 5 | (scene >> 3)
    return np.ascontiguousarray(words.astype("<u2")).view(np.uint8).reshape(*words.shape, 2)


def _macs(result) -> int:
    return sum(op.macs() for op in result.plan.steps)


def run_camera(model_path: Path, out_dir: Path, frame_result, frame_outputs: np.ndarray, test_x: np.ndarray,
               test_y: np.ndarray, run_c, progress, board=None, board_inputs: int = 1) -> CameraResult:
    """The two streamed builds over the test set; `run_c(c_dir, result, inputs, progress)`
    runs generated C on the host (demo.run_c), `frame_outputs` are the frame build's. With
    `board` (emulated), the camera build also runs there on `board_inputs` random frames
    (and all-0, all-255) against TFLite on the reference's input."""
    camera = CameraResult(images=len(test_x), macs_frame=_macs(frame_result))
    with progress.stage(f"streamed (--input rows): the generated C over {len(test_x)} test images"):
        rows = compile_model(model_path, Options(input="rows"))
        write_files(rows.files, out_dir / "rows")
        ours = run_c(out_dir / "rows", rows, test_x, progress)
    camera.rows_arena_bytes, camera.macs_rows = rows.arena_bytes, _macs(rows)
    camera.rows_outputs_identical = int(sum(a.tobytes() == b.tobytes() for a, b in zip(ours, frame_outputs)))
    camera.rows_accuracy = float(np.mean(predictions(ours) == test_y))

    frames = camera_frames(test_x)
    with progress.stage(f"a simulated RGB565 camera at {SENSOR.width}x{SENSOR.height}: the generated C "
                        f"over {len(test_x)} frames"):
        scaled = compile_model(model_path, CAMERA)
        write_files(scaled.files, out_dir / "camera")
        ours = run_c(out_dir / "camera", scaled, frames, progress)
    with progress.stage("the .tflite on the Python reference's input for the same frames"):
        out = scaled.graph.output
        reference = scaled.preprocess.reference(frames, scaled.graph.input)
        theirs = oracle.reference_outputs(model_path, reference, out.shape, numpy_dtype(out))
    camera.camera_arena_bytes = scaled.arena_bytes
    camera.camera_outputs_identical = int(sum(a.tobytes() == b.tobytes() and ran
                                              for a, b, ran in zip(ours, theirs.outputs, theirs.ran)))
    camera.camera_accuracy = float(np.mean(predictions(ours) == test_y))
    camera.camera_reference_accuracy = float(np.mean(predictions(theirs.outputs) == test_y))
    if board is not None:
        _run_on(board, model_path, out_dir, board_inputs, progress, camera)
    return camera


def _run_on(board, model_path: Path, out_dir: Path, inputs: int, progress, camera: CameraResult) -> None:
    from dataclasses import replace

    from ..firmware.runner import FirmwareFailed
    from ..verification.board import run_on_board

    with progress.stage(f"the camera build for {board.core}: {inputs + 2} frames under QEMU ({board.name})"):
        result = compile_model(model_path, replace(CAMERA, target=board.core))
        c_dir = out_dir / f"camera-{board.core}"
        write_files(result.files, c_dir)
        try:
            camera.firmware = run_on_board(model_path, result, c_dir, board, count=inputs, per_layer=False).summary()
        except FirmwareFailed as exc:
            camera.firmware = {"bit_exact": False, "error": str(exc)}


def predictions(outputs: np.ndarray) -> np.ndarray:
    """The class each output row picks."""
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def format_camera(camera: CameraResult, pct) -> list[str]:
    rows_equal = "equal" if camera.rows_outputs_identical == camera.images else "DIFFERENT"
    return [
        f"streamed (--input rows): arena {camera.rows_arena_bytes:,} B, MACs {camera.macs_rows:,} (frame: "
        f"{camera.macs_frame:,}); accuracy {pct(camera.rows_accuracy)}, {camera.rows_outputs_identical}/"
        f"{camera.images} outputs byte-identical to the frame API's ({rows_equal})",
        f"camera ({PixelFormat.RGB565} {SENSOR.width}x{SENSOR.height} -> bilinear, {NORMALIZE}): arena "
        f"{camera.camera_arena_bytes:,} B; accuracy {pct(camera.camera_accuracy)} "
        f"(.tflite on the reference's input: {pct(camera.camera_reference_accuracy)}); "
        f"{camera.camera_outputs_identical}/{camera.images} outputs byte-identical"] + _firmware_line(camera.firmware)


def _firmware_line(fw: dict | None) -> list[str]:
    if not fw:
        return []
    if not fw.get("inputs"):
        return [f"camera on the Cortex-M4: {fw.get('error', 'not run')}"]
    return [f"camera on the Cortex-M4: {fw['matched_reference']}/{fw['inputs']} random frames identical under QEMU "
            f"({fw['board']}); {fw['instructions_per_inference']:,} instructions per inference"]
