"""Model readers. All validation of untrusted input happens here."""

from __future__ import annotations

from pathlib import Path

from .. import ir
from ..errors import ModelError
from .tflite import load_tflite


def load_model(path: str | Path, reference: str = "tflite") -> ir.Graph:
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ModelError("ONNX models are not supported yet; convert to .tflite", source=str(path))
    if not path.exists():
        raise ModelError("no such file", source=str(path))
    if path.is_dir():
        raise ModelError("is a folder; give the .tflite file", source=str(path))
    return load_tflite(path, reference)
