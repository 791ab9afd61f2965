"""Every fixture model, built with -fsanitize=address,undefined and the debug canaries,
runs random and extreme inputs clean and bit-exact with TFLite. Part of the full matrix: about ten
seconds per model (most of it the sanitizer build)."""

from __future__ import annotations

import pytest
from host_check import HostModel

import model_zoo




@pytest.mark.full
@pytest.mark.parametrize("name", sorted(model_zoo.MODELS))
def test_zoo_model_is_clean_under_sanitizers(name, tmp_path):
    model = HostModel(model_zoo.get_model(name), tmp_path, sanitize=True)
    tally = model.compare(model.inputs(4, seed=1))
    assert tally.bit_exact, tally


@pytest.mark.full
@pytest.mark.parametrize("kind", model_zoo.SINGLE_OP_KINDS)
def test_single_op_model_is_clean_under_sanitizers(kind, tmp_path):
    model = HostModel(model_zoo.single_op_model(kind, 0), tmp_path, sanitize=True)
    tally = model.compare(model.inputs(20, seed=1))
    assert tally.bit_exact, tally
