"""Fixed-point helpers with TensorFlow Lite's exact semantics.

Everything here runs at compile time: it turns the float32 scales stored in a model into the
integer multipliers, shifts, ranges and tables that the generated C uses. Each function
follows the corresponding TFLite reference routine step by step, including which products
are taken in float32 and which in double, because one ulp of difference in a scale can move
a multiplier by one and break bit-exactness.

The gemmlowp primitives work on numpy int64 arrays that hold int32 values (or on plain ints),
so a whole 256-entry table is computed at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Context, Decimal

import numpy as np

from .ir import Activation, DType, Tensor

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------- rounding


def round_half_away(x: float) -> int:
    """C's round() on a double (TfLiteRound): halves go away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def roundf(x: np.float32) -> np.float32:
    """C's roundf() on a float32 value: halves away from zero. The + 0.5 is done in float64,
    where it is exact: in float32, 0.5 - 2^-25 + 0.5 would round up to 1 and floor to 1."""
    x = np.float32(x)
    return np.float32(np.sign(x) * np.floor(np.float64(np.abs(x)) + 0.5))


# --------------------------------------------------------------------------- multipliers


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real ~= multiplier * 2**(shift - 31), multiplier in [2**30, 2**31).

    Returns (multiplier, shift); shift > 0 is a left shift.
    """
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = round_half_away(mantissa * (1 << 31))
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:  # too small to represent: TFLite flushes it to zero
        return 0, 0
    return q, shift


def per_channel_multipliers(input_scale: float, weight_scales: tuple[float, ...],
                            output_scale: float, channels: int) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: float32 scales widened to double, then combined.

    A per-tensor weight scale is broadcast to every channel, as TFLite's int8 kernels do.
    """
    if len(weight_scales) == 1:
        weight_scales = weight_scales * channels
    pairs = [quantize_multiplier(input_scale * ws / output_scale) for ws in weight_scales]
    return [m for m, _ in pairs], [s for _, s in pairs]


def fully_connected_multipliers(input_scale: float, weight_scales: tuple[float, ...],
                                output_scale: float, units: int) -> tuple[list[int], list[int]]:
    """FULLY_CONNECTED: per-channel weights go through the convolution routine; a per-tensor
    weight scale through GetQuantizedConvolutionMultipler, whose input*weight product is a
    float32 multiplication, widened to double only afterwards."""
    if len(weight_scales) > 1:
        return per_channel_multipliers(input_scale, weight_scales, output_scale, units)
    product = float(np.float32(input_scale) * np.float32(weight_scales[0]))
    m, s = quantize_multiplier(product / output_scale)
    return [m] * units, [s] * units


def add_multipliers(scale1: float, scale2: float, output_scale: float, left_shift: int = 20):
    """ADD's Prepare: both inputs are brought to twice the larger input scale, in double."""
    twice_max = 2.0 * max(scale1, scale2)
    return (quantize_multiplier(scale1 / twice_max), quantize_multiplier(scale2 / twice_max),
            quantize_multiplier(twice_max / ((1 << left_shift) * output_scale)))


def add_input_table(zero_point: int, multiplier: int, shift: int, left_shift: int = 20) -> np.ndarray:
    """ADD's rescaled input for every byte, indexed by the byte read as unsigned: what the
    reference computes per element, ((x - zero_point) << left_shift) rescaled, as int32."""
    values = np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.int64)
    shifted = (values - zero_point) << left_shift
    return multiply_by_quantized_multiplier(shifted, multiplier, shift).astype(np.int32)


# --------------------------------------------------------------------------- activation range


def quantize_value(real: float, scale: float, zero_point: int) -> int:
    """TFLite's Quantize() for activation bounds: zp + roundf(real / scale), in float32."""
    return zero_point + int(roundf(np.float32(real) / np.float32(scale)))


def activation_range(activation: Activation, output: Tensor) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output."""
    scale, zp = output.scale, output.zero_point
    low, high = INT8_MIN, INT8_MAX
    if activation in (Activation.RELU, Activation.RELU6):
        low = max(low, quantize_value(0.0, scale, zp))
    if activation is Activation.RELU6:
        high = min(high, quantize_value(6.0, scale, zp))
    if activation is Activation.RELU_N1_TO_1:
        low = max(low, quantize_value(-1.0, scale, zp))
        high = min(high, quantize_value(1.0, scale, zp))
    return low, high


# --------------------------------------------------------------------------- gemmlowp primitives


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def wrap32(x):
    """Wrap to int32 like two's-complement hardware."""
    return ((_i64(x) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a, b):
    a, b = _i64(a), _i64(b)
    total = a * b + np.where(a * b >= 0, 1 << 30, 1 - (1 << 30))
    truncated = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C division truncates
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, truncated)


def rounding_divide_by_pot(x, exponent):
    """Divide by 2**exponent, rounding halves away from zero."""
    x, exponent = _i64(x), _i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int):
    x = _i64(x)
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    limit = (1 << (31 - exponent)) - 1
    return np.where(x > limit, INT32_MAX, np.where(x < -limit, INT32_MIN, wrap32(x << exponent)))


# The largest right shift the SIMD kernels' 32-bit output stage takes: with |high| <= 2^30,
# adding 2^(r-1) + 128 * 2^r must stay inside int32.
MAX_FAST_RIGHT_SHIFT = 22


def fast_output_rounding(shifts, zero_point: int) -> np.ndarray | None:
    """Per channel 2^(r-1) + zero_point * 2^r with r = -shift, or None unless every r is in
    1..MAX_FAST_RIGHT_SHIFT. For such r, any multiplier >= 0 and |acc| < 2^30, with
    high = (2 * acc * multiplier + 2^31) >> 32 (SMMULR's doubling high multiply),
    (high + rounding + (acc < 0 ? -1 : 0)) >> r (arithmetic) equals
    rounding_divide_by_pot(high, r) + zero_point: the rounding division and the zero point
    in one add and one shift. The sign is acc's rather than high's: they differ only where
    high is 0, and there both sums shift down to the zero point."""
    rights = -np.asarray(shifts, dtype=np.int64)
    if not ((rights >= 1) & (rights <= MAX_FAST_RIGHT_SHIFT)).all():
        return None
    return ((np.int64(1) << (rights - 1)) + np.int64(zero_point) * (np.int64(1) << rights)).astype(np.int32)


def fast_output_scales(multipliers, shifts, zero_point: int) -> np.ndarray | None:
    """The SIMD kernels' per-channel output constants, [channels, 3] int32 rows of
    (multiplier, rounding, right shift) so one pointer walks them; None where
    fast_output_rounding is."""
    rounding = fast_output_rounding(shifts, zero_point)
    if rounding is None or min(multipliers, default=0) < 0:
        return None
    rights = -np.asarray(shifts, dtype=np.int64)
    return np.stack([np.asarray(multipliers, dtype=np.int64), rounding.astype(np.int64), rights], axis=1).astype(np.int32)


def fast_output_stage(acc, rows, signed: bool = True):
    """The SIMD kernels' output stage before the clamp, as the C computes it
    (templates/dsp/output_stage.c.j2, scaled_doubled of 2 * acc): SMMLAR's
    (2 * acc * multiplier + (rounding << 32) + 2^31) >> 32, plus -1 where acc is negative
    (unless not `signed`: see unsigned_rounding), shifted right. `rows` broadcast against
    `acc`: [..., 3] of (multiplier, rounding, right)."""
    acc, rows = _i64(acc), _i64(rows)
    multiplier, rounding, right = rows[..., 0], rows[..., 1], rows[..., 2]
    high = (2 * acc * multiplier + (rounding << 32) + (1 << 31)) >> 32
    return (high + ((acc >> 63) if signed else 0)) >> right


def requantized(acc, multiplier, shift, zero_point: int, act_min: int, act_max: int):
    """The reference's int8 output of an int32 accumulator: rescaled, offset, clamped."""
    scaled = multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point
    return np.clip(scaled, act_min, act_max)


@dataclass(frozen=True)
class FastOutput:
    """A layer's fast output stage: `scales` [channels, 3] rows of (multiplier, rounding,
    right shift), and per channel what the kernel's accumulator starts from instead of the
    bias the kernel would hold: nothing where `constant` (the row ignores the accumulator),
    else that bias minus `bias_shift` (a step row's threshold, 0 for the others)."""

    scales: np.ndarray
    constant: np.ndarray  # bool per channel
    bias_shift: np.ndarray  # int64 per channel
    signed: np.ndarray  # bool per channel: its row needs acc's sign (a step's, a re-derived one)

    def kernel_bias(self, bias: np.ndarray) -> np.ndarray:
        """The bias a kernel holds for these rows, given the one it would hold otherwise."""
        return np.where(self.constant, 0, bias.astype(np.int64) - self.bias_shift)


# Every quantity below is an accumulator's value exactly (no int32 wrap-around) as long as
# it stays below this in magnitude: the fast stage doubles it into an int32.
FAST_ACCUMULATOR_LIMIT = 1 << 30


def constant_scale_row(value: int) -> tuple[int, int, int]:
    """A row of `scales` whose output is `value` for any accumulator: multiplier 0 leaves
    SMMLAR with the rounding term alone, 2 * value + 1; the sign's -1 makes it 2 * value for
    a negative accumulator; either shifted right by one is `value`."""
    return 0, 2 * value + 1, 1


def step_scale_row(value: int) -> tuple[int, int, int]:
    """A row whose output is `value` below a zero accumulator and value + 1 from zero up:
    multiplier 0 leaves the rounding term, 2 * value + 2, minus one below zero; shifted right
    by one, value + 1 or value."""
    return 0, 2 * value + 2, 1


def fast_channel_rows(multipliers, shifts, zero_point: int, act_min: int, act_max: int,
                      acc_low, acc_high, kernel_bias, weight_reach) -> FastOutput | None:
    """Per channel, a row of `scales` proven to give the reference's output for every
    accumulator the channel can have, or None if some channel has none (the layer then
    takes the 64-bit output stage).

    A channel's true accumulator lies in [acc_low, acc_high] (bias + weights x input range);
    the kernel's partial sums start from `kernel_bias` and move by at most `weight_reach`
    (sum |w| times the largest input). The reference's output is nondecreasing in the
    accumulator (multipliers are >= 0, and each of its steps is monotonic where nothing
    wraps), which the proofs below use. A channel is, in order of preference:
    - constant (equal outputs at both ends of the range): constant_scale_row, its bias left
      out so its accumulator stays small whatever the model's bias;
    - plain: a right shift in 1..MAX_FAST_RIGHT_SHIFT, the multiplier and shift as they are
      (fast_output_rounding says why that is exact);
    - a step (two outputs, v below the reference's first accumulator t reaching v + 1 and
      v + 1 from there): step_scale_row, with t taken out of the kernel's bias, so its
      accumulator is negative exactly below t;
    - re-derived: a larger right shift becomes MAX_FAST_RIGHT_SHIFT with the multiplier
      scaled down to match, kept only if proven equal over the whole range
      (same_nondecreasing)."""
    rows, constant, shift, signed = [], [], [], []
    for channel in zip(multipliers, shifts, acc_low, acc_high, kernel_bias, weight_reach):
        row = _fast_channel_row(*(int(v) for v in channel), zero_point, act_min, act_max)
        if row is None:
            return None
        rows.append(row[0])
        constant.append(row[1])
        shift.append(row[2])
        signed.append(row[3])
    return FastOutput(np.array(rows, dtype=np.int64).reshape(-1, 3).astype(np.int32), np.array(constant, dtype=bool),
                      np.array(shift, dtype=np.int64), np.array(signed, dtype=bool))


def unsigned_rounding(fast: FastOutput, zero_point: int, act_min: int) -> bool:
    """Whether the fast stage may leave out acc's sign (the -1 below zero) on every channel:
    where act_min >= zero_point (a fused ReLU or ReLU6, or the zero point at -128) and every
    row is plain or constant. Then the clamp hides the difference. For acc >= 0 the -1 is not
    there anyway. For acc < 0 a plain row's high = (2 * acc * multiplier + 2^31) >> 32 is <= 0
    (multiplier >= 0), so (high + 2^(r-1) + zero_point * 2^r) >> r <= zero_point with the -1
    or without it, and the clamp makes both act_min (as the reference: its output is <=
    zero_point there too); a constant row's 2v + 1 shifted by one is v with the -1 or without.
    A step row is its sign, and a re-derived row's rounding term is free: both keep it."""
    return act_min >= zero_point and not fast.signed.any()


def _fast_channel_row(m, s, low, high, kernel_bias, weight_reach, zero_point, act_min, act_max):
    """(row, constant, bias shift, signed) for one channel, or None; see fast_channel_rows
    (and FastOutput.signed)."""
    if m < 0 or low < INT32_MIN or high > INT32_MAX:
        return None  # a negative scale, or an accumulator the reference could wrap
    if s > 0 and max(-low, high) << s > INT32_MAX:
        return None  # the reference's left shift could wrap: not monotonic

    def reference(acc):
        return requantized(acc, m, s, zero_point, act_min, act_max)

    def small(bias):
        return abs(bias) + weight_reach < FAST_ACCUMULATOR_LIMIT

    first, last = (int(v) for v in reference(_i64([low, high])))
    if first == last:
        return (constant_scale_row(first), True, 0, False) if small(0) else None
    if -MAX_FAST_RIGHT_SHIFT <= s <= -1 and small(kernel_bias):
        return (m, int(fast_output_rounding([s], zero_point)[0]), -s), False, 0, False
    if last == first + 1:
        threshold = int(first_reaching(lambda acc, _: reference(acc), [[last]], [low], [high])[0, 0])
        return (step_scale_row(first), False, threshold, True) if small(kernel_bias - threshold) else None
    if s >= -MAX_FAST_RIGHT_SHIFT or not small(kernel_bias):
        return None
    for row in _rederived_rows(m, -s, zero_point, reference, low, high):
        if same_nondecreasing(reference, lambda acc, row=row: np.clip(fast_output_stage(acc, row), act_min, act_max),
                              low, high):
            return row, False, 0, True
    return None


# The rounding terms a row may hold: with |2 * acc * multiplier| < 2^61, SMMLAR's sum stays
# inside int32 (the bound MAX_FAST_RIGHT_SHIFT keeps the plain rounding terms under).
MAX_FAST_ROUNDING = (1 << 29) + (1 << 21)


REDERIVED_NEIGHBOURS = 16


def _rederived_rows(m: int, right: int, zero_point: int, reference, low: int, high: int):
    """Candidate rows for a right shift beyond MAX_FAST_RIGHT_SHIFT: the multiplier scaled
    down by the excess and its REDERIVED_NEIGHBOURS on either side, each with the plain
    rounding term, then with the
    rounding term that puts the reference's first output step where the reference has it
    (the rounding term is free: a row only has to agree with the reference on [low, high])."""
    excess = right - MAX_FAST_RIGHT_SHIFT
    plain = int(fast_output_rounding([-MAX_FAST_RIGHT_SHIFT], zero_point)[0])
    scaled = round_half_away(m / 2 ** excess)
    first_step = int(first_reaching(lambda acc, _: reference(acc), [[reference(_i64(low)) + 1]], [low], [high])[0, 0])
    # Each neighbouring multiplier moves the steps by a fraction of an accumulator far from
    # zero, where a dead channel's bias puts them: a few dozen give the rounding term's
    # coarse grid (2^31 / multiplier accumulators) many chances to land on them.
    for multiplier in (scaled + (k + 1) // 2 * (-1) ** k for k in range(2 * REDERIVED_NEIGHBOURS + 1)):
        if not 0 <= multiplier <= INT32_MAX:
            continue
        yield multiplier, plain, MAX_FAST_RIGHT_SHIFT
        rounding = _rounding_reaching(multiplier, reference(_i64(first_step)), first_step)
        if rounding is not None:
            yield multiplier, rounding, MAX_FAST_RIGHT_SHIFT


def _rounding_reaching(multiplier: int, value: int, acc: int) -> int | None:
    """The least rounding term with which a row of `multiplier` gives `value` at `acc` (the
    stage is nondecreasing in its rounding term), or None if none within MAX_FAST_ROUNDING."""
    def reaches(rounding):
        return fast_output_stage(acc, (multiplier, rounding, MAX_FAST_RIGHT_SHIFT)) >= value

    lo, hi = -MAX_FAST_ROUNDING, MAX_FAST_ROUNDING
    if not reaches(hi):
        return None
    while lo < hi:
        mid = lo + (hi - lo) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid + 1, hi)
    return lo


def same_nondecreasing(f, g, low: int, high: int) -> bool:
    """Whether two nondecreasing integer functions (vectorized over int64 arrays) are equal on
    every integer of [low, high]. Such a function is determined by its value at `low` and, for
    each larger value v up to its value at `high`, the first point where it reaches v; so
    comparing those (a binary search per value, all values at once) is a proof, at the cost
    of about log2(high - low) evaluations of a few hundred points."""
    ends_f, ends_g = f(_i64([low, high])), g(_i64([low, high]))
    if (ends_f != ends_g).any():
        return False
    values = np.arange(int(ends_f[0]) + 1, int(ends_f[1]) + 1, dtype=np.int64)[None, :]
    return bool((first_reaching(lambda x, _: f(x), values, [low], [high])
                 == first_reaching(lambda x, _: g(x), values, [low], [high])).all())


def first_reaching(f, values, low, high, near=None) -> np.ndarray:
    """Per row (a channel) and value (a column of `values`, [rows or 1, values]), the first x
    in the row's [low, high] where f, nondecreasing, reaches the value (high + 1 where it does
    not). f(x, rows) is f's values at x ([len(rows), values]) for those rows (indices into
    `low`); it is only evaluated inside [low, high]. A binary search, every row and value at
    once: in the bracket `near` ((lo, hi), each [rows, values], inside [low, high]) where one
    is given, and for the rows where its answer r is not shown to be the first (f reaches the
    value at r, and r is low or f does not at r - 1), again over all of [low, high + 1]."""
    low, high = np.asarray(low, dtype=np.int64)[:, None], np.asarray(high, dtype=np.int64)[:, None]
    values = np.broadcast_to(np.asarray(values, dtype=np.int64), np.broadcast_shapes(np.shape(values), low.shape))
    every = np.arange(len(low))
    if near is None:
        return _search(f, values, every, low, high + 1, high)
    found = _search(f, values, every, *near, high)
    certain = ((f(found, every) >= values)
               & ((found == low) | (f(np.maximum(found - 1, low), every) < values))).all(axis=1)
    if not certain.all():
        rows = np.flatnonzero(~certain)
        found[rows] = _search(f, values[rows], rows, low[rows], high[rows] + 1, high[rows])
    return found


def _search(f, values, rows, lo, hi, high):
    """first_reaching's binary search in [lo, hi] ([rows, values], broadcast) for the given
    rows, where f is taken to reach every value at high + 1."""
    lo, hi = (np.array(np.broadcast_to(bound, values.shape), dtype=np.int64) for bound in (lo, hi))
    while (searching := lo < hi).any():
        mid = lo + (hi - lo) // 2  # <= high where searching
        reached = f(np.minimum(mid, high), rows) >= values
        hi = np.where(searching & reached, mid, hi)
        lo = np.where(searching & ~reached, mid + 1, lo)
    return lo


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's MultiplyByQuantizedMultiplier, double rounding (the reference build's)."""
    shift = _i64(shift)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap32(_i64(x) << left), multiplier), right)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    srdhm = saturating_rounding_doubling_high_mul
    exp_minus_one_eighth = 1895147668
    one_third = 715827883
    x = wrap32(_i64(a) + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4_over_4 = rounding_divide_by_pot(srdhm(x2, x2), 2)
    poly = rounding_divide_by_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(exp_minus_one_eighth + srdhm(exp_minus_one_eighth, wrap32(x + poly)))


# exp(-2**k) in Q0.31, for the bits of the input's integer part (gemmlowp's barrel shifter).
_EXP_OF_MINUS_POWERS_OF_TWO = [(-2, 1672461947), (-1, 1302514674), (0, 790015084),
                               (1, 290630308), (2, 39332535), (3, 720401), (4, 242)]


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp's exp_on_negative_values for a Q(integer_bits).(31-integer_bits) input <= 0;
    returns Q0.31."""
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_OF_MINUS_POWERS_OF_TWO:
        if integer_bits > exponent:
            bit_set = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(bit_set, saturating_rounding_doubling_high_mul(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


# --------------------------------------------------------------------------- per-op constants

SOFTMAX_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def softmax_exp_table(input_scale: float, beta: float) -> np.ndarray:
    """exp(beta * scale * -d) in Q0.31 for d = max - x in 0..255, as TFLite's reference SOFTMAX
    computes it. Differences beyond the kernel's radius (diff_min) are excluded from the sum
    and produce the minimum output; a zero entry does exactly that, so it stands for them."""
    real = min(float(np.float32(beta)) * input_scale * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)),
               float(INT32_MAX))
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << SOFTMAX_DIFF_INTEGER_BITS) - 1)
                        * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)) / float(1 << left_shift))
    diffs = -np.arange(256, dtype=np.int64)
    # MultiplyByQuantizedMultiplierGreaterThanOne: the left shift, then the doubling high mul.
    scaled = saturating_rounding_doubling_high_mul(wrap32(diffs << left_shift), multiplier)
    table = exp_on_negative_values(scaled, SOFTMAX_DIFF_INTEGER_BITS)
    return np.where(diffs >= -radius, table, 0).astype(np.int32)


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """QuantizedMeanOrSum folds the division by the element count into the multiplier."""
    multiplier, shift = quantize_multiplier(input_scale / output_scale)
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    return int(np.int32((multiplier << extra) // count)), shift - extra


def requantize_table(input: Tensor, output: Tensor) -> np.ndarray:
    """QUANTIZE between integer types (Requantize), as a table indexed by the input byte."""
    multiplier, shift = quantize_multiplier(input.scale / output.scale)
    values = _input_byte_values(input)
    q = multiply_by_quantized_multiplier(values - input.zero_point, multiplier, shift) + output.zero_point
    info = np.iinfo(np.dtype(output.dtype))
    return np.clip(q, info.min, info.max).astype(output.dtype)


def float_quantize_constants(scale: float, zero_point: int) -> tuple[float, int, int]:
    """(divisor, invert, offset) of the C's float32 -> int8 QUANTIZE, which computes
    clamp(((uint32)trunc_saturating(round(x / divisor)) ^ invert) + offset) and equals TFLite's
    zero_point + (int32)roundf(x / scale), clamped, also where the quotient leaves int32
    (TFLite's x86-64 build: INT32_MIN there, plus the zero point, wrapping). A saturating
    conversion gives INT32_MAX for a positive overflow, which clamps like INT32_MIN + zero
    point for every zero point but 0; for 0, the quotient is negated (dividing by -scale is
    exactly -(x / scale)) and the bits inverted, ~t + 1 = -t: in range the same value, and
    both overflows then clamp to -128, as INT32_MIN does."""
    if zero_point != 0:
        return scale, 0, zero_point
    return -scale, -1, 1


def float_quantize_reference(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """What TFLite's reference QUANTIZE float32 -> int8 gives on x86-64, in numpy: roundf of
    the float32 quotient, converted as the x86 does (INT32_MIN out of range and for NaN),
    plus the zero point wrapping, clamped. For tests and checks; the C computes it otherwise."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.asarray(x, dtype=np.float32) / np.float32(scale)
        wide = q.astype(np.float64)
        rounded = np.sign(wide) * np.floor(np.abs(wide) + 0.5)  # roundf, exact: |q| + 0.5 is exact in double
        ok = np.isfinite(rounded) & (rounded >= -(2.0**31)) & (rounded < 2.0**31)
        converted = np.where(ok, np.nan_to_num(rounded), float(INT32_MIN)).astype(np.int64)
    return np.clip(wrap32(converted + zero_point), INT8_MIN, INT8_MAX).astype(np.int8)


def mul_constant_table(input: Tensor, constant: Tensor, output: Tensor, activation: Activation) -> np.ndarray:
    """int8 MUL by a one-element constant, as a table indexed by the input byte: the
    reference's (x - x_zp) * (c - c_zp) rescaled by one multiplier, whose real factor
    input scale * constant scale / output scale is taken in float32 (the scales' own type in
    TFLite's Prepare) and only then widened to double."""
    real = np.float32(np.float32(input.scale) * np.float32(constant.scale)) / np.float32(output.scale)
    multiplier, shift = quantize_multiplier(float(np.float32(real)))
    product = (_input_byte_values(input) - input.zero_point) * (_constant_value(constant) - constant.zero_point)
    q = multiply_by_quantized_multiplier(product, multiplier, shift) + output.zero_point
    return np.clip(q, *activation_range(activation, output)).astype(np.int8)


def add_constant_table(input: Tensor, constant: Tensor, output: Tensor, activation: Activation,
                       constant_first: bool, left_shift: int = 20) -> np.ndarray:
    """int8 ADD of a one-element constant, as a table indexed by the input byte: each input
    brought to twice the larger input scale, summed, rescaled (ADD's reference arithmetic,
    the same as `add_input_table`'s)."""
    first, second = (constant, input) if constant_first else (input, constant)
    (m1, s1), (m2, s2), (mo, so) = add_multipliers(first.scale, second.scale, output.scale, left_shift)
    x = multiply_by_quantized_multiplier((_input_byte_values(input) - input.zero_point) << left_shift,
                                         *((m2, s2) if constant_first else (m1, s1)))
    c = multiply_by_quantized_multiplier((_constant_value(constant) - constant.zero_point) << left_shift,
                                         *((m1, s1) if constant_first else (m2, s2)))
    q = multiply_by_quantized_multiplier(x + c, mo, so) + output.zero_point
    return np.clip(q, *activation_range(activation, output)).astype(np.int8)


def _constant_value(t: Tensor) -> int:
    return int(t.data.reshape(-1)[0])


_EXP_CONTEXT = Context(prec=60)  # far more digits than any float32 rounding decision needs


def expf(x: np.float32) -> np.float32:
    """exp(x) for a float32 x, correctly rounded to float32: the same bytes on every
    compiling machine, whatever its C library, or none."""
    exact = Decimal(float(x)).exp(_EXP_CONTEXT)  # float32 -> float -> Decimal are exact
    with np.errstate(over="ignore"):  # past the largest float32 is infinity, as in C
        nearest = np.float32(float(exact))  # two roundings (to double, then float32): check neighbours
    neighbours = (nearest, np.nextafter(nearest, np.float32(-np.inf)), np.nextafter(nearest, np.float32(np.inf)))
    # IEEE rounding treats infinity as 2^128, the next step after the largest float32.
    return min(neighbours, key=lambda candidate: abs(
        (Decimal(float(candidate)) if np.isfinite(candidate) else Decimal(2) ** 128) - exact))


def logistic_table(input: Tensor, output: Tensor) -> np.ndarray:
    """int8 LOGISTIC is a 256-entry table that TFLite fills in float32 arithmetic
    (LUTPopulate): dequantize, 1 / (1 + expf(-x)), scale, roundf, add the zero point.

    TFLite calls the C library's expf, which is not correctly rounded everywhere (glibc's is
    within 0.502 ulp), so its table could depend on the machine. Ours uses the correctly
    rounded expf, and each entry is proven the same for any expf within one ulp of it: the
    table then equals TFLite's with any such C library. An entry that is not (its scaled
    sigmoid sits within rounding noise of a half) is refused rather than guessed."""
    table = np.empty(256, dtype=np.int8)
    for value in _input_byte_values(input).tolist():
        real = np.float32(np.float32(input.scale) * np.float32(value - input.zero_point))
        exact = expf(-real)
        neighbours = {_logistic_entry(e, output) for e in (np.nextafter(exact, np.float32(-np.inf)), exact,
                                                           np.nextafter(exact, np.float32(np.inf)))}
        if len(neighbours) != 1:
            raise ValueError(f"the LOGISTIC table entry of input {value} depends on the last bit of expf")
        table[value + 128] = neighbours.pop()
    return table


def _logistic_entry(exp_of_minus_x: np.float32, output: Tensor) -> int:
    one = np.float32(1.0)
    sigmoid = np.float32(one / np.float32(one + exp_of_minus_x))
    scaled = np.float32(sigmoid * (one / np.float32(output.scale)))
    q = int(np.float32(roundf(scaled) + np.float32(output.zero_point)))
    return max(INT8_MIN, min(INT8_MAX, q))


def _input_byte_values(t: Tensor) -> np.ndarray:
    return np.arange(256, dtype=np.int64) + (-128 if t.dtype == DType.INT8 else 0)
