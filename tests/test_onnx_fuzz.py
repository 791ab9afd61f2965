"""Fuzz the ONNX frontend: bit-flipped, overwritten and truncated files, and structurally
valid protobufs with random constants, shapes and attributes. Every mutant must compile
(to sane C) or be refused in one line with exit code 2: never another exception."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnx_zoo
from frontend_fuzz import run_case

SEEDS = [(kind, qdq) for kind in onnx_zoo.SINGLE_OPS for qdq in (False, True)]
ACCEPTED = ("compiled", "refused")


def _seed_bytes(rng: random.Random) -> bytes:
    kind, qdq = rng.choice(SEEDS)
    return onnx_zoo.single_op(kind, rng.choice(onnx_zoo.ACTIVATIONS), qdq=qdq).read_bytes()


def _byte_mutant(rng: random.Random) -> bytes:
    data = bytearray(_seed_bytes(rng))
    for _ in range(rng.randint(1, 4)):
        kind, at = rng.choice(("flip", "overwrite", "truncate")), rng.randrange(len(data))
        if kind == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "overwrite":
            data[at] = rng.randrange(256)
        else:
            del data[rng.randrange(at, len(data)):]
    return bytes(data)


def _random_like(array: np.ndarray, rng: random.Random) -> np.ndarray:
    generator = np.random.default_rng(rng.randrange(2**32))
    shape = array.shape if rng.random() < 0.7 else tuple(generator.integers(0, 5, rng.randint(0, 4)))
    if array.dtype == np.float32:
        values = [0.0, -1.0, 1e-45, 3.4e38, float(generator.normal())]
        return np.full(shape, rng.choice(values), np.float32)
    info = np.iinfo(array.dtype)
    return generator.integers(info.min, info.max, shape, endpoint=True).astype(array.dtype)


def _structural_mutant(rng: random.Random) -> bytes:
    model = onnx.load_from_string(_seed_bytes(rng))
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.6 and model.graph.initializer:
            tensor = rng.choice(model.graph.initializer)
            tensor.CopyFrom(numpy_helper.from_array(_random_like(numpy_helper.to_array(tensor), rng), tensor.name))
        else:
            node = rng.choice(model.graph.node)
            name = rng.choice(["strides", "pads", "group", "dilations", "axis", "transB", "alpha", "kernel_shape"])
            value = rng.choice([0, -1, 2, 3, 1 << 40, [0, 0], [1, 2, 3], [-5, 1, 1, 1], 0.5])
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return model.SerializeToString()


@pytest.mark.parametrize("mutant", [_byte_mutant, _structural_mutant])
def test_onnx_mutants_compile_or_are_refused(mutant, tmp_path):
    rng = random.Random(mutant.__name__)
    outcomes: dict[str, int] = {}
    for case in range(150):
        path = tmp_path / "mutant.onnx"
        path.write_bytes(mutant(rng))
        outcome = run_case(path, tmp_path / "out")
        assert outcome in ACCEPTED, f"case {case}: {outcome}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("refused", 0) > 10  # the mutants do reach the checks
