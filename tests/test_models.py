"""Whole networks from the model zoo, each bit-exact on 50 random inputs plus the extremes."""

from __future__ import annotations

import pytest
from conftest import assert_bit_exact

import model_zoo


FAST_TIER_MODELS = ("mnv2_a035_96_c1000", "mnv2_a035_96_c10")


@pytest.mark.parametrize("name", [name if name in FAST_TIER_MODELS else pytest.param(name, marks=pytest.mark.full)
                                  for name in sorted(model_zoo.MODELS)])
def test_model_is_bit_exact(name, out_dir):
    assert_bit_exact(model_zoo.get_model(name), out_dir, count=50)


def test_flagship_runs_clean_under_sanitizers(out_dir):
    assert_bit_exact(model_zoo.get_model("mnv2_a035_96_c1000"), out_dir, count=4, sanitize=True)
