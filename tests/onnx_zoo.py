"""Quantized ONNX fixtures, built as PyTorch users make them and cached like model_zoo's.

A float graph is written with the `onnx` package's helpers the way torchvision's legacy
exporter emits MobileNetV2 (Conv with batch norm folded into weights and bias, Clip(0, 6),
Add, GlobalAveragePool, Flatten, Gemm), then quantized by onnxruntime's own
`quantize_static` (QOperator, per-channel int8 weights, uint8 or int8 activations) with a
random calibration reader. The cache key holds everything that changes the bytes.

Two exporter styles: "legacy" (torch.onnx.export(dynamo=False): GlobalAveragePool + Flatten,
opset 17) and "dynamo" (torch's default exporter since 2.9: ReduceMean over H, W with
keepdims and the axes as an input + Reshape to [1, -1], opset 18), whose head the quantizer
leaves in float between DequantizeLinear and QuantizeLinear.

MATRIX: the issue's 64 MobileNetV2s (2 widths x 2 input sizes x 2 class counts x QOperator
and QDQ x u8 and s8 activations x both exporters), built up front by `build_all` (conftest's
session start, two processes) so no test is billed for them.

    python tests/onnx_zoo.py          # build every fixture not cached yet, timed
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_zoo import build_in_processes, cache_dir

EXPORTERS = {"legacy": 17, "dynamo": 18}  # -> the opset each writes
# (expansion, channels, repeats, stride) of MobileNetV2's inverted residuals (torchvision).
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
SINGLE_OPS = ("conv", "depthwise", "add", "gap", "gemm", "reduce_mean")
ACTIVATIONS = ("uint8", "int8")
FORMATS = {"qoperator": False, "qdq": True}  # -> quantize(qdq=...)
WIDTHS, SIZES, CLASS_COUNTS = (0.35, 1.0), (96, 128), (10, 1000)


def _divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _GraphWriter:
    """Nodes and initializers of a float NCHW graph, with random He-scaled weights."""

    def __init__(self, seed: int, exporter: str = "legacy"):
        self.exporter = exporter
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers = [], []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def constant(self, kind: str, value: np.ndarray) -> str:
        name = self.name(kind)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv(self, x: str, in_c: int, out_c: int, kernel: int, stride: int, group: int = 1, relu6: bool = True) -> str:
        fan_in = in_c // group * kernel * kernel
        w = self.rng.normal(0, np.sqrt(2 / fan_in), (out_c, in_c // group, kernel, kernel)).astype(np.float32)
        bias = self.rng.normal(0, 0.1, out_c).astype(np.float32)
        out = self.name("conv")
        pad = kernel // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, self.constant("w", w), self.constant("b", bias)], [out], name=out, group=group,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, dilations=[1, 1]))
        return self.clip(out) if relu6 else out

    def clip(self, x: str) -> str:
        out = self.name("relu6")
        low, high = self.constant("min", np.float32(0)), self.constant("max", np.float32(6))
        self.nodes.append(helper.make_node("Clip", [x, low, high], [out], name=out))
        return out

    def add(self, a: str, b: str) -> str:
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out

    def head(self, x: str, channels: int, classes: int) -> str:
        pooled, flat, logits = self.name("gap"), self.name("flatten"), self.name("logits")
        w = self.rng.normal(0, np.sqrt(1 / channels), (classes, channels)).astype(np.float32)
        b = self.rng.normal(0, 0.1, classes).astype(np.float32)
        if self.exporter == "dynamo":  # adaptive_avg_pool2d -> mean(-1, -2), flatten -> view
            axes, shape = self.constant("axes", np.array([-1, -2], np.int64)), self.constant("shape", np.array([1, -1], np.int64))
            self.nodes += [helper.make_node("ReduceMean", [x, axes], [pooled], name=pooled, keepdims=1),
                           helper.make_node("Reshape", [pooled, shape], [flat], name=flat)]
        else:
            self.nodes += [helper.make_node("GlobalAveragePool", [x], [pooled], name=pooled),
                           helper.make_node("Flatten", [pooled], [flat], name=flat, axis=1)]
        self.nodes += [helper.make_node("Gemm", [flat, self.constant("fc_w", w), self.constant("fc_b", b)], [logits],
                                        name=logits, alpha=1.0, beta=1.0, transB=1)]
        return logits

    def model(self, input_shape: tuple[int, ...], output: str, output_shape: tuple[int, ...]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "mobilenet_v2_like",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(output_shape))], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORTERS[self.exporter])])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def mobilenet_v2_float(width: float, size: int, classes: int, seed: int, exporter: str = "legacy") -> onnx.ModelProto:
    g = _GraphWriter(seed, exporter)
    channels = _divisible(32 * width)
    x = g.conv("input", 3, channels, 3, 2)
    for expansion, c, repeats, stride in BLOCKS:
        out_c = _divisible(c * width)
        for i in range(repeats):
            block_input, hidden = x, channels * expansion
            if expansion != 1:
                x = g.conv(x, channels, hidden, 1, 1)
            x = g.conv(x, hidden, hidden, 3, stride if i == 0 else 1, group=hidden)
            x = g.conv(x, hidden, out_c, 1, 1, relu6=False)
            if i > 0:
                x = g.add(block_input, x)
            channels = out_c
    last = _divisible(1280 * max(1.0, width))
    x = g.conv(x, channels, last, 1, 1)
    return g.model((1, 3, size, size), g.head(x, last, classes), (1, classes))


def single_op_float(kind: str, seed: int) -> onnx.ModelProto:
    """One op of each kind between the edges (QuantizeLinear in, a classifier out, so the
    graph ends in DequantizeLinear after QGemm as every QOperator MobileNetV2 does);
    "reduce_mean": the dynamo exporter's head."""
    g = _GraphWriter(seed, "dynamo" if kind == "reduce_mean" else "legacy")
    channels, size = 8, 12
    x = "input"
    if kind == "conv":
        x = g.conv(x, channels, 16, 3, 2)
        channels = 16
    elif kind == "depthwise":
        x = g.conv(x, channels, channels, 3, 1, group=channels)
    elif kind == "add":
        x = g.add(g.conv(x, channels, channels, 1, 1, relu6=False), x)
    else:  # gap, gemm, reduce_mean: the head alone, after a 1x1 convolution (the quantizer keeps float ops
        x = g.conv(x, channels, channels, 1, 1)  # that read the float input unquantized)
    return g.model((1, 8, size, size), g.head(x, channels, 5 if kind != "gemm" else 24), (1, 5 if kind != "gemm" else 24))


class _RandomReader:
    """onnxruntime's CalibrationDataReader protocol: random inputs, then None."""

    def __init__(self, shape: tuple[int, ...], count: int, seed: int):
        rng = np.random.default_rng(seed)
        self.batches = iter([{"input": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # not needed by MinMax calibration
        pass


def quantize(float_model: onnx.ModelProto, activation: str, path: Path, seed: int = 0, qdq: bool = False) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    CalibrationDataReader.register(_RandomReader)
    shape = tuple(d.dim_value for d in float_model.graph.input[0].type.tensor_type.shape.dim)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        onnx.save(float_model, float_path)
        quantize_static(str(float_path), str(path), _RandomReader(shape, 16, seed),
                        quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8)
    return path


def _cached(name: str, make) -> Path:
    version = importlib.metadata.version("onnxruntime")
    path = cache_dir() / "onnx" / f"{name}_ort{version}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        make(partial)
        partial.replace(path)
    return path


def mobilenet_v2(activation: str, width: float = 0.35, size: int = 96, classes: int = 10, seed: int = 0,
                 qdq: bool = False, exporter: str = "legacy") -> Path:
    name = f"mnv2_{width}_{size}_{classes}_{activation}_s{seed}" + ("_qdq" if qdq else "") + \
        ("" if exporter == "legacy" else f"_{exporter}")
    return _cached(name, lambda p: quantize(mobilenet_v2_float(width, size, classes, seed, exporter), activation, p,
                                            seed, qdq))


def single_op(kind: str, activation: str, seed: int = 0, qdq: bool = False) -> Path:
    return _cached(f"op_{kind}_{activation}_s{seed}" + ("_qdq" if qdq else ""),
                   lambda p: quantize(single_op_float(kind, seed), activation, p, seed, qdq))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One model of the matrix; `path()` builds it (or finds it cached)."""

    width: float
    size: int
    classes: int
    activation: str
    qdq: bool
    exporter: str

    @property
    def id(self) -> str:
        fmt = "qdq" if self.qdq else "qoperator"
        return f"{self.width}-{self.size}px-{self.classes}c-{self.activation}-{fmt}-{self.exporter}"

    def path(self) -> Path:
        return mobilenet_v2(self.activation, self.width, self.size, self.classes, qdq=self.qdq,
                            exporter=self.exporter)

    def twin(self) -> "Cell":
        """The same float graph and calibration quantized in the other format."""
        return dataclasses.replace(self, qdq=not self.qdq)


MATRIX = [Cell(w, s, c, a, q, e) for w, s, c, a, q, e in itertools.product(
    WIDTHS, SIZES, CLASS_COUNTS, ACTIVATIONS, FORMATS.values(), EXPORTERS)]


def fixture_builders() -> list:
    """Every ONNX model the test suite reads, as calls that return its cached path."""
    ops = [lambda k=kind, a=act, q=qdq: single_op(k, a, qdq=q)
           for kind in SINGLE_OPS for act in ACTIVATIONS for qdq in FORMATS.values()]
    return [cell.path for cell in MATRIX] + ops


def build_all(jobs: int = 1) -> int:
    """Build every ONNX fixture not cached yet, in `jobs` processes; returns how many were built."""
    return build_in_processes(__file__, build_share, jobs, lambda: set((cache_dir() / "onnx").glob("*.onnx")))


def build_share(part: int, parts: int) -> None:
    """Build every `parts`-th fixture, starting at `part`."""
    for fixture in fixture_builders()[part::parts]:
        fixture()


if __name__ == "__main__":
    import logging
    import time

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process, once per model
    if sys.argv[1:2] == ["--share"]:
        build_share(int(sys.argv[2]), int(sys.argv[3]))
    else:
        start = time.perf_counter()
        built = build_all(jobs=int(sys.argv[1]) if sys.argv[1:] else 2)
        print(f"built {built} ONNX fixtures in {time.perf_counter() - start:.1f} s into {cache_dir() / 'onnx'}")
