"""From a PyTorch MobileNetV2 to C that equals ONNX Runtime bit for bit: export to ONNX,
quantize with ONNX Runtime's tool and a calibration reader, compile with mnv2gen, verify.

    python export_and_quantize.py --width 0.35 --size 96 --classes 10 \
        --weights my_finetuned.pt --calibration calib_images/ --out build/

Copy it and change what your model needs. The steps, each a function below:

1. `export_onnx`: torchvision's mobilenet_v2 (or your nn.Module) -> float ONNX with the
   legacy exporter (`dynamo=False`), which writes GlobalAveragePool + Flatten, all in one
   file; the dynamo exporter works too (its ReduceMean head stays float in ONNX Runtime, and
   mnv2gen repeats that float arithmetic). Needs torch (and torchvision for the stock
   model); nothing else here does.
2. `quantize`: onnxruntime.quantization.quantize_static, per-channel int8 weights, uint8
   (default) or int8 activations, QOperator (default) or QDQ, calibrated on your images.
   Calibrate on real data: random data gives scales that fit nothing.
3. `compile_and_verify`: `mnv2gen compile` then `mnv2gen verify` against ONNX Runtime.

Input layout: the model takes float NCHW, normalized as in training (torchvision: ImageNet
mean and std). `--quantized-input` compiles C that takes the first QuantizeLinear's output
(uint8/int8 NHWC) instead, so a camera frame needs no float copy: the generated
mnv2_README.md gives the scale and zero point to apply.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

# torchvision's normalization, applied to calibration images as the model saw them in training.
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def export_onnx(path: Path, width: float, size: int, classes: int, weights: Path | None = None,
                opset: int = 17) -> Path:
    """A torchvision MobileNetV2 as float ONNX, as mnv2gen reads it after quantization."""
    import torch  # only this step needs torch
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(width_mult=width, num_classes=classes)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    example = torch.zeros(1, 3, size, size)
    # dynamo=False: GlobalAveragePool + Flatten (see the module's docstring). One file: the
    # legacy exporter keeps the weights inside the model (mnv2gen reads .onnx.data too).
    torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset,
                      input_names=["input"], output_names=["logits"])
    return path


def load_image(path: Path, size: int) -> np.ndarray:
    """One image as the model's float NCHW input: resized, scaled to [0, 1], normalized."""
    from PIL import Image  # calibration from image files needs Pillow

    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image, np.float32) / 255.0
    return ((pixels - MEAN) / STD).transpose(2, 0, 1)[np.newaxis].astype(np.float32)


def calibration_inputs(folder: Path | None, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """The calibration set: every image (or .npy array of [1, 3, size, size]) in `folder`,
    or, without one, `count` random normalized images (for trying the pipeline only)."""
    if folder is None:
        print("warning: no --calibration folder: calibrating on random data, the scales will fit "
              "nothing real", file=sys.stderr)
        rng = np.random.default_rng(seed)
        return [rng.normal(0, 1, (1, 3, size, size)).astype(np.float32) for _ in range(count)]
    inputs = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npy":
            array = np.load(path).astype(np.float32).reshape(1, 3, size, size)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            array = load_image(path, size)
        else:
            continue
        inputs.append(array)
    if not inputs:
        raise SystemExit(f"{folder}: no images (.png, .jpg, .bmp) or .npy arrays to calibrate on")
    return inputs[:count]


class CalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, input_name: str, inputs: list[np.ndarray]):
        self.input_name = input_name
        self.inputs = inputs
        self.position = 0

    def get_next(self) -> dict | None:
        if self.position == len(self.inputs):
            return None
        self.position += 1
        return {self.input_name: self.inputs[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def quantize(float_path: Path, out_path: Path, inputs: list[np.ndarray], activation: str = "uint8",
             qdq: bool = False) -> Path:
    """Static quantization as mnv2gen reads it: per-channel symmetric int8 weights,
    per-tensor activations of `activation` ("uint8" or "int8")."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    CalibrationDataReader.register(CalibrationReader)
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    quantize_static(str(float_path), str(out_path), CalibrationReader(input_name, inputs),
                    quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8)
    return out_path


def compile_and_verify(model: Path, out: Path, inputs: int = 100, quantized_input: bool = False) -> None:
    """`mnv2gen compile` into `out`, then `mnv2gen verify` against ONNX Runtime (exit status
    1 on any differing output: the script stops there)."""
    flags = ["--quantized-input"] if quantized_input else []
    for command in (["compile", str(model), "--out", str(out)],
                    ["verify", str(model), "--out", str(out), "-n", str(inputs)]):
        subprocess.run([sys.executable, "-m", "mnv2gen.cli", *command, *flags], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.35, help="width multiplier (default 0.35)")
    parser.add_argument("--size", type=int, default=96, help="input height and width (default 96)")
    parser.add_argument("--classes", type=int, default=10, help="classes (default 10)")
    parser.add_argument("--weights", type=Path, help="a state_dict to load (default: untrained)")
    parser.add_argument("--float-model", type=Path,
                        help="skip the export: quantize this float ONNX model instead (no torch needed)")
    parser.add_argument("--calibration", type=Path, help="folder of calibration images or .npy inputs")
    parser.add_argument("--calibration-count", type=int, default=100, help="inputs to calibrate on")
    parser.add_argument("--activation", choices=["uint8", "int8"], default="uint8")
    parser.add_argument("--qdq", action="store_true", help="QDQ format instead of QOperator")
    parser.add_argument("--quantized-input", action="store_true",
                        help="C that takes the first QuantizeLinear's output (NHWC bytes), not floats")
    parser.add_argument("--verify-inputs", type=int, default=100, help="random inputs verify compares")
    parser.add_argument("--out", type=Path, default=Path("build"), help="output folder (default build/)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    float_path = args.float_model or export_onnx(args.out / "model_float.onnx", args.width, args.size,
                                                 args.classes, args.weights)
    inputs = calibration_inputs(args.calibration, args.size, args.calibration_count)
    model = quantize(float_path, args.out / "model.onnx", inputs, args.activation, args.qdq)
    compile_and_verify(model, args.out / "c", args.verify_inputs, args.quantized_input)
    print(f"the C is in {args.out / 'c'}: see its mnv2_README.md")


if __name__ == "__main__":
    main()
