"""ONNX Runtime's requantization in integers, for cores without an FPU, and its proof.

ONNX Runtime's output stage (MlasRequantizeOutput) is
    out = clamp(zp + RNE(fl(fl(acc) * S)), act_min, act_max)
with fl() a rounding to float32 and RNE() to the nearest integer, ties to even. A float32
scale is exactly S = mantissa * 2^-shift with a 24-bit mantissa, so on integers:

1. fl(acc): an accumulator of more than 24 significant bits keeps 24, rounded to even
   (m = |acc| >> s, rounded; the scale's shift loses s);
2. the product P = m * mantissa is exact in 48 bits: acc * S = P / 2^e (e = shift - s);
3. fl(P / 2^e) then RNE: with n = P >> e and f = P mod 2^e, one rounding of P / 2^e gives n
   below the half and n + 1 above it; the float32 rounding in between moves P / 2^e onto
   the half n + 0.5 (a float32 for n < 2^22) exactly where it lies within half a float32
   step of it, and RNE then takes the even one of n and n + 1. That step is 2^(b - 23) in
   the binade [2^b, 2^(b + 1)) of n + 0.5: 2^(bitlen(n) - 24), in P's units 2^(e - 24) *
   2^bitlen(n), and the half's neighbourhood is half of it on either side (above 0.5 for
   n = 0: below it every value rounds to 0 either way).

The C (templates/ref/ort_output_stage.c.j2, kernels.OutputStage.ORT_INTEGER) computes these
steps; `requantized` below computes the same integer steps in numpy, and `unproven_channels`
checks them against ONNX Runtime's float32 arithmetic (quant_ort.ort_output: numpy's float32,
which rounds each operation as the x86-64 CPU does) on every accumulator a channel can have:
both are nondecreasing step functions of the accumulator (each step above is), so equal
values at the ends of the range and equal first accumulators reaching each output value in
between (quant.first_reaching) prove them equal everywhere in it.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .quant_ort import near_steps, ort_output


FLOAT32_BITS = 24  # significant bits of a float32, and of fl(acc)
# The C's 64-bit arithmetic: 2 * f < 2^(e + 1) and 1 << e stay inside uint64 below this.
MAX_SHIFT = 62
# The integer stage's largest |output - zp| it rounds exactly (beyond it every clamp has cut):
# n + 0.5 must be a float32 half, and bitlen(n) (the C smears n's bits) at most 8.
MAX_MAGNITUDE = 255


def integer_scales(scales) -> tuple[np.ndarray, np.ndarray]:
    """Each float32 scale as (mantissa, shift), S = mantissa * 2^-shift exactly, mantissa <
    2^24; a tiny scale's trailing zero bits dropped to bring its shift down to MAX_SHIFT
    where they allow."""
    fraction, exponent = np.frexp(np.asarray(scales, dtype=np.float32).astype(np.float64))
    mantissa = (fraction * 2.0**FLOAT32_BITS).astype(np.int64)
    shift = FLOAT32_BITS - exponent.astype(np.int64)
    for _ in range(FLOAT32_BITS):
        drop = (mantissa % 2 == 0) & (shift > MAX_SHIFT)
        mantissa, shift = np.where(drop, mantissa // 2, mantissa), np.where(drop, shift - 1, shift)
    return mantissa, shift


def scale_words(scales) -> np.ndarray:
    """Each scale's mantissa and shift in one int32 word, as the C reads them (a float32's
    size): mantissa | shift << 24 (mantissa < 2^24, shift <= MAX_SHIFT < 2^7)."""
    mantissa, shift = integer_scales(scales)
    return (mantissa | (shift << FLOAT32_BITS)).astype(np.int32)


def bit_length(values) -> np.ndarray:
    """bitlen of each non-negative int64 below 2^53 (0 for 0): float64 holds it exactly, and
    frexp's exponent is its bit length."""
    return np.frexp(np.asarray(values, dtype=np.int64).astype(np.float64))[1].astype(np.int64)


def requantized(acc, mantissa, shift, zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """The integer stage's output for int64 accumulators (|acc| <= 2^31), step by step as the
    C computes it (see the module's docstring); mantissa and shift broadcast against acc."""
    acc = np.asarray(acc, dtype=np.int64)
    magnitude = np.abs(acc)
    excess = np.maximum(bit_length(magnitude) - FLOAT32_BITS, 0)  # fl(acc): bits beyond 24, rounded to even
    kept = magnitude >> excess
    dropped = magnitude - (kept << excess)
    half = np.where(excess > 0, np.int64(1) << np.maximum(excess - 1, 0), 0)
    kept += (excess > 0) & ((dropped > half) | ((dropped == half) & (kept & 1 == 1)))
    e = np.asarray(shift, dtype=np.int64) - excess
    product = kept * np.asarray(mantissa, dtype=np.int64)
    n = product >> e
    twice = 2 * (product - (n << e))
    one = np.int64(1) << e
    distance = np.abs(twice - one)
    window = (np.int64(1) << bit_length(np.minimum(n, MAX_MAGNITUDE))) << (e - FLOAT32_BITS)
    n = n + np.where(distance <= window, n & 1, twice > one)
    signed = np.where(acc < 0, -n, n)
    return np.clip(signed, act_min - zero_point, act_max - zero_point) + zero_point


def unproven_channels(scales, zero_point: int, act_min: int, act_max: int, low, high) -> np.ndarray:
    """The channels (indices) where the integer stage of `scales` (integer_scales) is not
    proven equal to ONNX Runtime's output on every accumulator of [low[c], high[c]] (or
    where the C's 64-bit steps could overflow). All channels at once: their ends compared,
    then for each output value the first accumulator reaching it, for both functions
    (quant.first_reaching, from quant_ort.near_steps)."""
    scales = np.asarray(scales, dtype=np.float32)
    low, high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)
    mantissa, shift = integer_scales(scales)
    excess = np.maximum(bit_length(np.maximum(np.abs(low), np.abs(high))) - FLOAT32_BITS, 0)
    safe = (shift - excess >= FLOAT32_BITS) & (shift <= MAX_SHIFT)
    mantissa, shift = np.where(safe, mantissa, 1), np.where(safe, shift, MAX_SHIFT)  # the others fail below

    def ort(acc, rows=slice(None)):
        return ort_output(acc, scales[rows, None], zero_point, act_min, act_max)

    def ours(acc, rows=slice(None)):
        return requantized(acc, mantissa[rows, None], shift[rows, None], zero_point, act_min, act_max)

    ends = np.stack([low, high], axis=1)
    equal = safe & (ort(ends) == ours(ends)).all(axis=1)
    values = np.arange(act_min + 1, act_max + 1, dtype=np.int64)[None, :]  # [1, values]
    near = near_steps(scales, values - zero_point, low, high)
    firsts_ort, firsts_ours = (quant.first_reaching(f, values, low, high, near) for f in (ort, ours))
    equal &= (firsts_ort == firsts_ours).all(axis=1)
    return np.flatnonzero(~equal)
