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
    """C's roundf() on a float32 value."""
    x = np.float32(x)
    return np.float32(np.sign(x) * np.floor(np.abs(x) + np.float32(0.5)))


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
