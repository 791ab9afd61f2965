"""Model readers. All validation of untrusted input happens here."""

from __future__ import annotations

from pathlib import Path

from .. import ir
from ..errors import ModelError
from .tflite import load_tflite


def load_model(path: str | Path, reference: str = "tflite") -> ir.Graph:
    """The IR of a .tflite or a quantized .onnx model, told apart by the extension, else by
    the first bytes (a .tflite has its "TFL3" identifier at byte 4)."""
    path = Path(path)
    if not path.exists():
        raise ModelError("no such file", source=str(path))
    if path.is_dir():
        raise ModelError("is a folder; give the .tflite or .onnx file", source=str(path))
    if is_onnx(path):
        if reference != "tflite":
            raise ModelError("--reference applies to .tflite models; an ONNX model's C equals ONNX Runtime",
                             source=str(path))
        from .onnx import load_onnx  # imports the onnx package, which .tflite users need not have

        return load_onnx(path)
    return load_tflite(path, reference)


def is_onnx(path: str | Path) -> bool:
    """Whether `path` names an ONNX model (by its extension, else its first bytes)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".tflite"):
        return suffix == ".onnx"
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] != b"TFL3" and head[:1] == ONNX_FIRST_BYTE


# An ONNX ModelProto starts with field 1 (ir_version), a varint: its key byte is 0x08.
ONNX_FIRST_BYTE = b"\x08"
