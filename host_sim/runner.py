"""Run a host-built model over the harness's binary protocol."""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def run_host(binary: str | Path, inputs: np.ndarray, output_dtype: np.dtype,
             output_shape: tuple[int, ...], timeout: float = 600) -> np.ndarray:
    """Feed a batch of inputs (first axis = input number); return the outputs likewise."""
    inputs = np.ascontiguousarray(inputs)
    request = b"MNV2" + struct.pack("<I", len(inputs)) + inputs.tobytes()
    result = subprocess.run([str(binary)], input=request, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{binary} exited with {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[-2000:]}")
    expected = len(inputs) * int(np.prod(output_shape)) * np.dtype(output_dtype).itemsize
    if len(result.stdout) != expected:
        raise RuntimeError(f"{binary} wrote {len(result.stdout)} bytes, expected {expected}")
    return np.frombuffer(result.stdout, dtype=output_dtype).reshape((len(inputs), *output_shape))


def _trace_file(binary: str | Path, single_input: np.ndarray) -> bytes:
    """Run one input through a trace build; return what it wrote to its trace file."""
    with tempfile.TemporaryDirectory() as tmp:
        trace_path = Path(tmp) / "trace.bin"
        request = b"MNV2" + struct.pack("<I", 1) + np.ascontiguousarray(single_input).tobytes()
        result = subprocess.run([str(binary), str(trace_path)], input=request, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"trace run failed: {result.stderr.decode(errors='replace')[-2000:]}")
        return trace_path.read_bytes()


def trace_host(binary: str | Path, single_input: np.ndarray) -> dict[int, bytes]:
    """Run one input through a trace build; return each layer's output bytes."""
    data = _trace_file(binary, single_input)
    layers, pos = {}, 0
    while pos < len(data):
        layer, size = struct.unpack_from("<ii", data, pos)
        layers[layer] = data[pos + 8:pos + 8 + size]
        pos += 8 + size
    return layers


def trace_rows_host(binary: str | Path, single_input: np.ndarray) -> list[tuple[object, ...]]:
    """Run one input through a row-trace build (build.row_trace_flags); return its events
    in order: ("read", buffer, row), ("write", stage, buffer, row), ("layer", number)."""
    lines = _trace_file(binary, single_input).decode().splitlines()
    return [(kind, *map(int, numbers)) for kind, *numbers in map(str.split, lines)]
