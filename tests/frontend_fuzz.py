"""Mutate real .tflite files and classify what `mnv2gen compile` does with them.

Shared by tests/test_fuzz.py (a few hundred cases, driven by hypothesis) and
bench/fuzz_frontend.py (ten thousand, driven by a seeded RNG). A case is a list of
mutations applied to a seed model's bytes; `run_case` compiles the result in-process
through the CLI's `main` and returns one outcome:

    compiled  exit 0 and the generated C looks sane (ASCII, bannered, every file present)
    refused   exit 2 with a one-line `mnv2gen: error: ...` message
    anything else is a failure: "exception:<type>", "timeout", "exit:<code>", "bad-message",
    "bad-output:<why>".

Random bytes mostly land in weight data, where they change nothing structural, so the
positions are drawn from the flatbuffer's structure (everything outside buffer payloads)
nine times out of ten. Byte mutations mostly exercise the reader; "field" mutations set one
schema field (a dim, a type, an index, a scale, an option, an opcode) to an interesting
value in a well-formed flatbuffer, which exercises the validator.
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import struct
from dataclasses import dataclass
from pathlib import Path

import tflite

import tflite_edit
from mnv2gen.cli import main

MUTATIONS = ("truncate", "bitflip", "overwrite", "interesting", "splice", "duplicate", "field", "field")
# Values that tend to break size and index arithmetic when written over an int32 field.
INTERESTING_INT32 = (0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                     0x7FFFFFFF, -0x80000000, 0x40000000, 0x01000000)
INTERESTING_FLOAT32 = (0.0, -0.0, -1.0, 1e-45, 1e-30, 1e30, 3.4e38, float("inf"), float("nan"))
EXPECTED_FILES = ("model.c", "model.h", "weights.c", "weights.h", "kernels.c", "kernels.h")


@dataclass(frozen=True)
class Seed:
    """A real model and the byte positions of its structure (outside buffer payloads)."""

    name: str
    data: bytes
    structure: tuple[int, ...]

    @classmethod
    def from_path(cls, name: str, path: Path) -> "Seed":
        data = path.read_bytes()
        payload = bytearray(len(data))
        model = tflite.Model.GetRootAs(data, 0)
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            if buffer.DataLength():
                start = buffer._tab.Vector(buffer._tab.Offset(4))
                payload[start:start + buffer.DataLength()] = b"\x01" * buffer.DataLength()
        return cls(name, data, tuple(i for i, in_payload in enumerate(payload) if not in_payload))


def mutate(seed: Seed, other: Seed, rng: random.Random, count: int) -> bytes:
    """Apply `count` random mutations; `other` is the donor for splices."""
    data = bytearray(seed.data)
    for _ in range(count):
        data = bytearray(_mutate_once(data, seed, other, rng, rng.choice(MUTATIONS)))
    return bytes(data)


def _position(data: bytearray, seed: Seed, rng: random.Random) -> int:
    if seed.structure and rng.random() < 0.9:
        position = rng.choice(seed.structure)
        if position < len(data):
            return position
    return rng.randrange(max(len(data), 1))


def _mutate_once(data: bytearray, seed: Seed, other: Seed, rng: random.Random, kind: str) -> bytes:
    if not data:
        return bytes(data)
    at = _position(data, seed, rng)
    if kind == "field":
        return _mutate_field(bytes(data), rng)
    if kind == "truncate":
        return bytes(data[:at])
    if kind == "bitflip":
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        data[at:at + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
    elif kind == "interesting":
        at -= at % 4  # flatbuffer scalars are aligned
        if rng.random() < 0.7:
            packed = struct.pack("<i", rng.choice(INTERESTING_INT32))
        else:
            packed = struct.pack("<f", rng.choice(INTERESTING_FLOAT32))
        data[at:at + 4] = packed
    elif kind == "splice":  # our head, the donor's tail
        cut = rng.randrange(len(other.data))
        return bytes(data[:at]) + other.data[cut:]
    elif kind == "duplicate":  # copy a chunk of the file over another place
        length = rng.randint(4, 64)
        source = rng.randrange(max(len(data) - length, 1))
        data[at:at + length] = data[source:source + length]
    return bytes(data)


def _mutate_field(data: bytes, rng: random.Random) -> bytes:
    """Set one schema field to an interesting value and re-serialize: a well-formed
    flatbuffer whose content is wrong, which reaches the validator rather than the reader."""
    try:
        model = tflite_edit.loads(data)
    except Exception:  # noqa: BLE001 - an earlier mutation broke it: leave it broken
        return data
    if not model.subgraphs:
        return data
    graph = model.graph
    value = rng.choice(INTERESTING_INT32 + (5, 6, 9, 10, 16, 17, 32))
    tensor = rng.choice(graph.tensors) if graph.tensors else None
    op = rng.choice(graph.operators) if graph.operators else None
    edits = {
        "shape": lambda: tensor.shape.__setitem__(rng.randrange(len(tensor.shape)), value) if tensor.shape else None,
        "rank": lambda: setattr(tensor, "shape", tensor.shape[:-1] if rng.random() < 0.5 else tensor.shape + [1]),
        "type": lambda: setattr(tensor, "type", value % 20),
        "buffer": lambda: setattr(tensor, "buffer", value % (len(model.buffers) + 2)),
        "scale": lambda: tensor.quant and tensor.quant.scale.__setitem__(
            0, rng.choice(INTERESTING_FLOAT32 + (1e-8, 1e-3, 1e3, 1e8))),
        "zero_point": lambda: tensor.quant and tensor.quant.zero_point and tensor.quant.zero_point.__setitem__(0, value),
        "axis": lambda: tensor.quant and setattr(tensor.quant, "axis", value % 6),
        "op_input": lambda: op.inputs and op.inputs.__setitem__(rng.randrange(len(op.inputs)), value % 12 - 1),
        "op_output": lambda: op.outputs and op.outputs.__setitem__(0, value % 12 - 1),
        "option": lambda: op.options and op.options.__setitem__(rng.choice(sorted(op.options)), value % 300),
        "opcode": lambda: model.operator_codes.__setitem__(
            op.opcode_index, tflite_edit.OperatorCode(value % 210, min(value % 210, 127))),
        "graph_io": lambda: setattr(graph, rng.choice(("inputs", "outputs")), [value % 12]),
        "drop_op": lambda: graph.operators.remove(op),
    }
    if tensor is None or op is None:
        return data
    try:
        edits[rng.choice(sorted(edits))]()
        return tflite_edit.dumps(model)
    except (OverflowError, ValueError, TypeError, struct.error, IndexError):
        return data  # the value does not fit the field's type: no case


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_case(model_path: Path, out_dir: Path, timeout: float = 30.0, target: str = "host") -> str:
    """Compile `model_path` in-process for `target` and classify the outcome (see the module
    doc)."""
    for stale in out_dir.glob("*") if out_dir.is_dir() else ():
        stale.unlink()  # a previous case's files must not pass for this one's
    stderr, stdout = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            code = main(["compile", str(model_path), "--out", str(out_dir), "--quiet", "--target", target])
    except CaseTimeout:
        return "timeout"
    except BaseException as exc:  # noqa: BLE001 - the point is to catch every escape
        return f"exception:{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if code == 2:
        message = stderr.getvalue()
        ok = message.startswith("mnv2gen: error: ") and message.count("\n") == 1
        return "refused" if ok else f"bad-message: {message[:300]!r}"
    if code != 0:
        return f"exit:{code}"
    problem = check_generated(out_dir)
    return f"bad-output:{problem}" if problem else "compiled"


def check_generated(out_dir: Path, prefix: str = "mnv2") -> str | None:
    """Why the generated C is not sane, or None."""
    for suffix in EXPECTED_FILES:
        path = out_dir / f"{prefix}_{suffix}"
        if not path.exists():
            return f"{path.name} missing"
        text = path.read_bytes()
        if not text.isascii() or not text.startswith(b"/* Generated by mnv2gen"):
            return f"{path.name} is not bannered ASCII"
    return None
