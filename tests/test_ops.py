"""Single-op models with random shapes and quantization (extreme scales included)."""

from __future__ import annotations

import pytest
from conftest import assert_bit_exact

import model_zoo

SEEDS = model_zoo.TEST_SEEDS


@pytest.mark.parametrize("seed", [seed if seed == 0 else pytest.param(seed, marks=pytest.mark.full) for seed in SEEDS])
@pytest.mark.parametrize("kind", model_zoo.SINGLE_OP_KINDS)
def test_single_op_is_bit_exact(kind, seed, out_dir):
    assert_bit_exact(model_zoo.single_op_model(kind, seed), out_dir, count=50, seed=seed,
                     sanitize=seed == 0)
