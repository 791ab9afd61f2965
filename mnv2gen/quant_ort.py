"""ONNX Runtime's output stage in fixed point, proven per channel.

ONNX Runtime requantizes a convolution's int32 accumulator in float32 (MlasRequantizeOutput):
RNE(fl(fl(acc) * S)) + zero point, clamped. That output is a nondecreasing step function of
the accumulator (fl, the product by S > 0 and RNE are each nondecreasing), so on a channel's
bounded accumulator range it is fixed by its value at the range's low end and its first
accumulator reaching each larger value. The DSP kernels' fixed-point stage without acc's sign
(templates/dsp/ort_output_stage.c.j2: SMMLAR of 2 * acc, then an arithmetic shift) is
nondecreasing too, so where a row of (multiplier, rounding, right) has the same low-end value
and the same first accumulators as ONNX Runtime, the two give the same output for every
accumulator of the channel (quant.same_nondecreasing's argument; `fixed_rows` compares them,
all channels of a layer at once).

Finding such a row: ONNX Runtime's steps sit where a line's would, except where fl(acc * S)
rounds across a half (then a step moves by one accumulator), so the multiplier is the one
whose line leaves the most room (`_Steps`). SMMLAR's rounding term moves the steps by 2^32
over the multiplier (more than half an accumulator): too coarse alone. The kernel's
accumulator may also start off by a shift `delta` (blocks hold the bias), which moves the
steps by whole accumulators; the two together reach the room for most channels. A channel
with no proven row keeps ONNX Runtime's float stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import quant

# A bias shift moves the kernel's partial sums by up to this much (they stay below
# quant.FAST_ACCUMULATOR_LIMIT: the caller's bound plus this is checked).
MAX_DELTA = 1 << 15
# Shifts in the order tried: the smallest first.
_DELTAS = np.array(sorted(range(-MAX_DELTA, MAX_DELTA + 1), key=abs), dtype=np.int64)
# Multipliers tried: the one leaving the most room and this many on either side.
MULTIPLIER_NEIGHBOURS = 2
# Delta candidates proven per multiplier (the first usually is: the room was computed exactly).
DELTA_TRIES = 2
# The right shift makes S * 2^(31 + right) a multiplier in [2^30, 2^31); the best line may
# lie a little below (S a power of two whose steps fl(acc) moved late): down to 2^29.
MIN_MULTIPLIER = 2**29
FLOAT_RIGHT = 0  # templates/dsp/ort_output_stage.c.j2: a row with this `right` is a float one


def ort_output(acc, scale, zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """ONNX Runtime's output of int32 accumulators (`scale` float32, broadcast against them),
    in float32 as it computes it: fl(acc) times the scale S rounded to float32, clamped to
    [act_min, act_max] less the zero point, rounded to an integer half to even, plus the zero
    point (clamping before rounding keeps a product beyond int64 in range)."""
    value = np.asarray(acc, dtype=np.int64).astype(np.float32) * np.asarray(scale, dtype=np.float32)
    value = np.clip(value, np.float32(act_min - zero_point), np.float32(act_max - zero_point))
    return np.rint(value).astype(np.int64) + zero_point


def near_steps(scales, magnitudes, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (`scales`, `low`, `high`) and output value u less the zero point
    (`magnitudes`, [channels or 1, values], |u| < 2^8), a bracket (lo, hi) of accumulators
    where ort_output's first one reaching it should lie, for quant.first_reaching: around
    (u - 0.5) / S, widened by what float32's roundings can move it (half a step of the
    product: 2^-16, and of the accumulator: 2^-24 of it)."""
    scales = np.asarray(scales, dtype=np.float32).astype(np.float64)[:, None]
    low, high = np.asarray(low, dtype=np.int64)[:, None], np.asarray(high, dtype=np.int64)[:, None]
    centre = np.clip(np.ceil((magnitudes - 0.5) / scales), low, high)
    reach = 2 + np.ceil(2.0**-15 / scales + np.abs(centre) * 2.0**-22)
    return np.clip(centre - reach, low, high).astype(np.int64), np.clip(centre + reach, low, high).astype(np.int64)


def fixed_stage(acc, rows, delta, act_min: int, act_max: int) -> np.ndarray:
    """The C's fixed-point stage, clamped, of accumulators whose kernel started `delta` off:
    quant.fast_output_stage without acc's sign."""
    acc = np.asarray(acc, dtype=np.int64) + np.asarray(delta, dtype=np.int64)
    return np.clip(quant.fast_output_stage(acc, rows, signed=False), act_min, act_max)


@dataclass(frozen=True)
class FixedRows:
    """A layer's rows of `scales` [channels, 3] (float rows, FLOAT_RIGHT, where `fixed` is
    False) and per channel the shift of its kernel's bias (0 for float rows)."""

    rows: np.ndarray
    deltas: np.ndarray
    fixed: np.ndarray


def fixed_rows(scales, zero_point: int, act_min: int, act_max: int, low, high, bias_reach,
               float_rows: np.ndarray) -> FixedRows:
    """Per channel, a fixed-point row and bias shift proven to give ONNX Runtime's output for
    every accumulator of [low, high], else the channel's row of `float_rows`. `bias_reach`
    bounds the magnitude of the kernel's partial sums from its unshifted bias."""
    scales = np.asarray(scales, dtype=np.float32)
    low, high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)
    rows = np.array(float_rows, dtype=np.int64)
    deltas = np.zeros(len(scales), dtype=np.int64)
    fixed = np.zeros(len(scales), dtype=bool)
    room = np.clip(quant.FAST_ACCUMULATOR_LIMIT - 1 - np.asarray(bias_reach, dtype=np.int64), 0, MAX_DELTA)
    usable = (scales > 0) & np.isfinite(scales) & (low >= quant.INT32_MIN) & (high <= quant.INT32_MAX)
    ends = ort_output(np.stack([low, high], axis=1), scales[:, None], zero_point, act_min, act_max)
    constant = usable & (ends[:, 0] == ends[:, 1])
    for channel in np.flatnonzero(constant):
        rows[channel] = quant.constant_scale_row(int(ends[channel, 0]))
    fixed |= constant
    with np.errstate(divide="ignore"):
        rights = -np.floor(np.log2(np.where(usable, scales, 1).astype(np.float64))).astype(np.int64) - 1
    steps = np.flatnonzero(usable & ~constant & (rights >= 1) & (rights <= quant.MAX_FAST_RIGHT_SHIFT))
    if not len(steps):
        return FixedRows(rows.astype(np.int32), deltas, fixed)
    layer = _Layer(scales[steps], zero_point, act_min, act_max, low[steps], high[steps], ends[steps], rights[steps])
    pending = {index: layer.candidates(index, int(room[channel])) for index, channel in enumerate(steps)}
    # Rounds: every channel's next candidate, all proven at once; the proven ones leave.
    while pending:
        tried = {index: next(candidates, None) for index, candidates in pending.items()}
        tried = {index: candidate for index, candidate in tried.items() if candidate is not None}
        if not tried:
            break
        indices = np.array(list(tried))
        row_array = np.array([candidate[0] for candidate in tried.values()], dtype=np.int64)
        delta_array = np.array([candidate[1] for candidate in tried.values()], dtype=np.int64)
        for index, row, delta, ok in zip(indices, row_array, delta_array,
                                         layer.proven(indices, row_array, delta_array)):
            if ok:
                rows[steps[index]], deltas[steps[index]], fixed[steps[index]] = row, delta, True
                del pending[index]
        pending = {index: pending[index] for index in tried if index in pending}
    return FixedRows(rows.astype(np.int32), deltas, fixed)


class _Layer:
    """The step channels of a layer: ONNX Runtime's first accumulators reaching each value
    ([channels, values], padded with the last one; quant.first_reaching near near_steps), and
    the multiplier that leaves each channel's steps the most room (_Steps)."""

    def __init__(self, scales, zero_point, act_min, act_max, low, high, ends, rights):
        self.low, self.high, self.rights = low, high, rights
        self.act_min, self.act_max = act_min, act_max
        first, last = ends[:, 0], ends[:, 1]
        count = int((last - first).max())
        self.values = np.minimum(first[:, None] + 1 + np.arange(count), last[:, None])
        self.thresholds = quant.first_reaching(
            lambda acc, rows: ort_output(acc, scales[rows, None], zero_point, act_min, act_max), self.values,
            low, high, near_steps(scales, self.values - zero_point, low, high))
        self.steps = _Steps(self.values << (31 + rights[:, None]), self.thresholds)
        self.best = self.steps.widest()

    def candidates(self, index: int, room: int):
        """(row, delta) of the multipliers with the most room, fewest |delta| first."""
        steps = _Steps(self.steps.c[index:index + 1], self.steps.t[index:index + 1])
        for k in range(2 * MULTIPLIER_NEIGHBOURS + 1):
            m = int(self.best[index]) + (k + 1) // 2 * (-1) ** k
            if not MIN_MULTIPLIER <= m < 2**31:
                continue
            for delta, rounding in steps.placements(m, room):
                yield (m, rounding, int(self.rights[index])), delta

    def proven(self, indices: np.ndarray, rows: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """Whether each channel's row gives ONNX Runtime's output on all of its range: the
        same value at both ends and the same first accumulator reaching each value between."""
        low, high, values = self.low[indices], self.high[indices], self.values[indices]
        def stage(acc):
            return fixed_stage(acc, rows[:, None, :], deltas[:, None], self.act_min, self.act_max)
        ends = stage(np.stack([low, high], axis=1))
        same_ends = (ends[:, 0] == values[:, 0] - 1) & (ends[:, 1] == values[:, -1])
        thresholds = self.thresholds[indices]
        # t is the stage's first accumulator reaching v too: it reaches v at t, not before.
        same_steps = ((stage(thresholds) >= values)
                      & ((thresholds == low[:, None]) | (stage(thresholds - 1) < values))).all(axis=1)
        return same_ends & same_steps


class _Steps:
    """Channels' steps as constraints on a row. The stage reaches value v at acc once
    2 * (acc + delta) * m + (2 * rounding + 1) * 2^31 >= v * 2^(32 + right), so its step for
    v is at ONNX Runtime's t exactly when, with P = (2 * rounding + 1) * 2^30 + m * delta and
    c = v * 2^(31 + right), c - m * t <= P < c - m * t + m. Over all steps A(m) <= P < B(m),
    A the largest left side, B the least right one: B - A is concave in m."""

    def __init__(self, c: np.ndarray, thresholds: np.ndarray):
        self.c, self.t = c.astype(np.int64), thresholds.astype(np.int64)  # [channels, values]

    def bounds(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lows = self.c - m[:, None] * self.t  # |c| < 2^61 and |m * t| < 2^62: inside int64
        return lows.max(axis=1), lows.min(axis=1) + m

    def width(self, m: np.ndarray) -> np.ndarray:
        a, b = self.bounds(m)
        return b - a

    def widest(self) -> np.ndarray:
        """Per channel, the multiplier in [MIN_MULTIPLIER, 2^31) with the widest [A, B) (a
        ternary search for the top of the concave width, every channel at once)."""
        lo = np.full(len(self.c), MIN_MULTIPLIER, dtype=np.int64)
        hi = np.full(len(self.c), 2**31 - 1, dtype=np.int64)
        while (hi - lo > 2).any():
            third = (hi - lo) // 3
            rising = self.width(lo + third) < self.width(hi - third)
            lo, hi = np.where(rising, lo + third + 1, lo), np.where(rising, hi, hi - third - 1)
        candidates = np.stack([lo, np.minimum(lo + 1, hi), hi])
        widths = np.stack([self.width(m) for m in candidates])
        return candidates[widths.argmax(axis=0), np.arange(len(self.c))]

    def placements(self, m: int, room: int):
        """(delta, rounding) with P = (2 * rounding + 1) * 2^30 + m * delta in [A, B), fewest
        |delta| first: the least odd multiple of 2^30 from A - m * delta lies a gap above."""
        a, b = (int(x[0]) for x in self.bounds(np.array([m], dtype=np.int64)))
        if a >= b:
            return
        deltas = _DELTAS[: 2 * room + 1]
        chosen = np.zeros(0, dtype=np.int64)
        for start, stop in ((0, 2**11), (2**11, len(deltas))):  # the few small shifts first
            chunk = deltas[start:stop]
            chosen = np.concatenate([chosen, chunk[(2**30 - a + m * chunk) % 2**31 < b - a]])
            if len(chosen) >= DELTA_TRIES:
                break
        for delta in chosen[:DELTA_TRIES]:
            q = a - m * int(delta) + int((2**30 - a + m * int(delta)) % 2**31)
            rounding = (q // 2**30 - 1) // 2
            if abs(rounding) <= quant.MAX_FAST_ROUNDING:
                yield int(delta), int(rounding)
