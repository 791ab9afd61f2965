"""ONNX Runtime's QLinearAdd in integers, for cores without an FPU, and its exhaustive proof.

ONNX Runtime computes, on the stored values a and b (int8 + offset),
    out = clamp(RNE(fl(a * A + fl(b * B + bias))), low, high)
with fl() a rounding to float32 (each fused multiply-add rounds once) and RNE() to the
nearest integer, ties to even. The inner sum t(b) = fl(b * B + bias) is a function of b
alone, and a * A one of a alone: two tables of 256 exact fixed-point terms (units of 2^-32,
the C's int64) whose sum is the outer fused multiply-add's exact sum x. Terms with bits
below 2^-32 are rounded to odd (truncated, the last bit set when anything was dropped): then
the sum keeps which side of every point of the 2^-31 grid x lies on, and the points that
decide the rounding (n + 0.5 and half a float32 step either side of it, for n < 256) lie on
that grid.

RNE(fl(x)) from x's integer part n and fraction f: above or below n + 0.5, x rounds up or
down, except within half a float32 step of n + 0.5 (2^(bitlen(n) - 25), n + 0.5 being in
the binade [2^(bitlen(n) - 1), 2^bitlen(n)); for n = 0 above 0.5, below it all rounds to 0
either way), where fl() lands on n + 0.5 itself (its mantissa is even: ties of fl() go to
it) and RNE takes the even one of n and n + 1. Negative sums round as their magnitudes do.

`unproven_pair` checks that form against ONNX Runtime's arithmetic computed exactly (Python
integers in units of 2^-149, float32's smallest step) on all 65,536 input pairs.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from .ort_integer import FLOAT32_BITS, MAX_MAGNITUDE, bit_length

FRACTION_BITS = 32  # the terms' units, 2^-32: the C's integer part is the sum's high word
TERM_LIMIT = 2**61  # |term| below it: the sum of two stays inside int64
UNITS = 149  # every float32, and every product of one with an integer, is a multiple of 2^-149


def stored_values(offset: int) -> np.ndarray:
    """The stored value of each table index: the C indexes by the int8 byte as uint8_t."""
    return (np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.int64) + offset)


def _exact(value: np.float32) -> int:
    """A float32 in units of 2^-UNITS, exactly."""
    return int(Fraction(float(value)) * (1 << UNITS))


def _round_significant(units: int) -> int:
    """An exact value (units of 2^-UNITS) rounded to float32 (24 significant bits, ties to
    even; below 2^-126 the units themselves are float32's subnormal steps)."""
    magnitude = abs(units)
    drop = magnitude.bit_length() - FLOAT32_BITS
    if drop > 0:
        kept, rest = magnitude >> drop, magnitude & ((1 << drop) - 1)
        half = 1 << (drop - 1)
        kept += rest > half or (rest == half and kept & 1)
        magnitude = kept << drop
    return -magnitude if units < 0 else magnitude


def _round_to_odd(units: int) -> int:
    """An exact value (units of 2^-UNITS) in units of 2^-FRACTION_BITS, rounded to odd."""
    shift = UNITS - FRACTION_BITS
    kept = units >> shift  # floor
    return kept | 1 if kept << shift != units else kept


def inner_sums(b_ratio, bias, offset: int) -> list[int]:
    """ONNX Runtime's inner fused multiply-add fl(b * B + bias) of each stored byte b (table
    order), exactly, in units of 2^-UNITS: one rounding to float32, as its VFMA."""
    b_exact, bias_exact = _exact(np.float32(b_ratio)), _exact(np.float32(bias))
    return [_round_significant(b * b_exact + bias_exact) for b in stored_values(offset).tolist()]


def _ort_outputs(a_ratio, b_ratio, bias, offset: int) -> np.ndarray:
    """ONNX Runtime's output [a index, b index], its float32 steps computed exactly."""
    values = stored_values(offset).tolist()
    a_exact, inner = _exact(np.float32(a_ratio)), inner_sums(b_ratio, bias, offset)
    low, high = -128 + offset, 127 + offset
    one, half = 1 << UNITS, 1 << (UNITS - 1)
    out = np.empty((256, 256), dtype=np.int64)
    for i, a in enumerate(values):
        product = a * a_exact
        row = out[i]
        for j, t in enumerate(inner):
            value = _round_significant(product + t)
            magnitude = abs(value)
            n, rest = magnitude >> UNITS, magnitude & (one - 1)
            n += rest > half or (rest == half and n & 1)
            row[j] = min(max(-n if value < 0 else n, low), high)
    return out


def add_terms(a_ratio, b_ratio, bias, offset: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The two tables (int64, units of 2^-32, rounded to odd): a * A and fl(b * B + bias) per
    stored byte; None where a term reaches TERM_LIMIT."""
    a_exact = _exact(np.float32(a_ratio))
    a_terms = [_round_to_odd(a * a_exact) for a in stored_values(offset).tolist()]
    b_terms = [_round_to_odd(inner) for inner in inner_sums(b_ratio, bias, offset)]
    if max(map(abs, a_terms + b_terms)) >= TERM_LIMIT:
        return None
    return np.array(a_terms, dtype=np.int64), np.array(b_terms, dtype=np.int64)


def integer_outputs(a_terms: np.ndarray, b_terms: np.ndarray, offset: int) -> np.ndarray:
    """The C's integer steps (templates/ref/ort.c.j2, ort_add_rounded) on every pair
    [a index, b index]."""
    total = a_terms[:, None] + b_terms[None, :]
    magnitude = np.abs(total)
    n = magnitude >> FRACTION_BITS
    fraction = magnitude & ((1 << FRACTION_BITS) - 1)
    middle = np.int64(1) << (FRACTION_BITS - 1)
    distance = np.abs(fraction - middle)
    window = np.int64(1) << (bit_length(np.minimum(n, MAX_MAGNITUDE)) + FRACTION_BITS - 25)
    rounded = np.where(distance <= window, n + (n & 1), n + (fraction > middle))
    rounded = np.where(n > MAX_MAGNITUDE, MAX_MAGNITUDE + 1, rounded)
    return np.clip(np.where(total < 0, -rounded, rounded), -128 + offset, 127 + offset)


@lru_cache(maxsize=64)
def _proven_terms(a_ratio: float, b_ratio: float, bias: float, offset: int):
    terms = add_terms(a_ratio, b_ratio, bias, offset)
    if terms is None:
        return None, f"a term reaches 2^{TERM_LIMIT.bit_length() - 1 - FRACTION_BITS} (int64's reach)"
    different = np.argwhere(integer_outputs(*terms, offset) != _ort_outputs(a_ratio, b_ratio, bias, offset))
    if different.size:
        a, b = stored_values(offset)[different[0]]
        return None, f"it differs at inputs {int(a)}, {int(b)}"
    return terms, None


def proven_terms(a_ratio, b_ratio, bias, offset: int):
    """(a_terms, b_terms, None) proven equal to ONNX Runtime on all 65,536 pairs of stored
    values, else (None, None, why not)."""
    terms, failure = _proven_terms(float(a_ratio), float(b_ratio), float(bias), int(offset))
    return (*(terms or (None, None)), failure)
