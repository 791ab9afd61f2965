"""Compile-time fixed-point helpers against hand-checked values and exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mnv2gen import quant


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.25, (1 << 30, -1)),
    (1e-12, (0, 0)),  # a shift below -31: TFLite flushes the multiplier to zero
])
def test_quantize_multiplier(real, expected):
    assert quant.quantize_multiplier(real) == expected


def test_quantize_multiplier_is_accurate():
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-6, 100, 500):
        m, s = quant.quantize_multiplier(float(real))
        assert 1 << 30 <= m < 1 << 31
        assert abs(Fraction(m) * Fraction(2) ** (s - 31) - Fraction(float(real))) <= Fraction(2) ** (s - 32)


def test_rounding_divide_by_pot_rounds_halves_away_from_zero():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4])
    assert quant.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 2, -2]


def test_saturating_doubling_high_mul_saturates_only_at_min_min():
    assert int(quant.saturating_rounding_doubling_high_mul(-(2**31), -(2**31))) == 2**31 - 1
    assert int(quant.saturating_rounding_doubling_high_mul(2**30, 2**30)) == 2**29


def test_multiply_by_quantized_multiplier_matches_exact_scaling():
    rng = np.random.default_rng(1)
    for _ in range(300):
        real = float(rng.uniform(1e-4, 0.99))
        x = int(rng.integers(-(2**20), 2**20))
        m, s = quant.quantize_multiplier(real)
        got = int(quant.multiply_by_quantized_multiplier(x, m, s))
        exact = Fraction(x) * Fraction(m) * Fraction(2) ** (s - 31)
        assert abs(got - exact) <= 1  # two roundings: within one unit of the exact product


def test_round_half_away():
    assert [quant.round_half_away(v) for v in (0.5, -0.5, 1.5, -1.5, 2.4999)] == [1, -1, 2, -2, 2]


def test_softmax_table_starts_at_one_and_decreases():
    table = quant.softmax_exp_table(0.1, 1.0)
    assert table[0] == 2**31 - 1
    assert all(a >= b for a, b in zip(table, table[1:]))


def _fast_output_stage(acc, multiplier, right, rounding):
    """The SIMD kernels' output stage, as the C computes it: SMMLAR of 2 * acc with the
    rounding term as its accumulate (the doubling high multiply plus the term), then one add
    of acc's sign and one arithmetic shift."""
    high_plus_rounding = ((rounding << 32) + 2 * acc * multiplier + (1 << 31)) >> 32
    return (high_plus_rounding + (acc >> 31)) >> right


def test_fast_output_stage_equals_tflite_for_every_fast_shift():
    rng = np.random.default_rng(7)
    for right in range(1, quant.MAX_FAST_RIGHT_SHIFT + 1):
        multipliers = rng.integers(1 << 30, 1 << 31, size=400, dtype=np.int64)
        multipliers[:2] = [1 << 30, 0]  # the smallest normalized multiplier, and a zero scale
        zero_points = rng.integers(-128, 128, size=400)
        accs = rng.integers(-(1 << 30) + 1, 1 << 30, size=400, dtype=np.int64)
        accs[:8] = [-1, -1, 0, 1, (1 << 30) - 1, -(1 << 30) + 1, -(1 << right), 3 << (right - 1)]
        for acc, m, zp in zip(accs.tolist(), multipliers.tolist(), zero_points.tolist()):
            scales = quant.fast_output_scales([m], [-right], zp)
            multiplier, rounding, shift_right = (int(v) for v in scales[0])
            assert (multiplier, shift_right) == (m, right)
            expected = int(quant.multiply_by_quantized_multiplier(acc, m, -right)) + zp
            assert _fast_output_stage(acc, multiplier, shift_right, rounding) == expected, (acc, m, right, zp)


def _vqrdmulh(a, b):
    """Helium's VQRDMULH.S32 on one lane, as the Arm ARM defines it: (2ab + 2^31) >> 32,
    saturated to int32."""
    return max(-(1 << 31), min((1 << 31) - 1, (2 * a * b + (1 << 31)) >> 32))


def _fast_output_lanes(acc, multiplier, right, rounding):
    """The Helium kernels' output stage on one lane (templates/mve/output_stage.c.j2's
    scaled_lanes_n): VQRDMULH, add the rounding term, add VSHR #31 of acc, VSHL by -right."""
    def int32(x):
        assert -(1 << 31) <= x < (1 << 31), "a lane overflowed"
        return x
    return int32(int32(_vqrdmulh(acc, multiplier) + rounding) + (acc >> 31)) >> right


def test_vector_fast_output_stage_equals_tflite_for_every_fast_shift():
    """The vector stage is the scalar one lane by lane: VQRDMULH never saturates on the
    accumulators the fast stage takes (|acc| < 2^30), so it is SMMLAR's high half."""
    rng = np.random.default_rng(11)
    for right in range(1, quant.MAX_FAST_RIGHT_SHIFT + 1):
        multipliers = rng.integers(1 << 30, 1 << 31, size=400, dtype=np.int64)
        multipliers[:3] = [1 << 30, 0, (1 << 31) - 1]  # smallest normalized, a dead channel, the largest
        zero_points = rng.integers(-128, 128, size=400)
        zero_points[:2] = [-128, 127]
        accs = rng.integers(-(1 << 30) + 1, 1 << 30, size=400, dtype=np.int64)
        accs[:8] = [-1, -1, 0, 1, (1 << 30) - 1, -(1 << 30) + 1, -(1 << right), 3 << (right - 1)]
        for acc, m, zp in zip(accs.tolist(), multipliers.tolist(), zero_points.tolist()):
            multiplier, rounding, shift_right = (int(v) for v in quant.fast_output_scales([m], [-right], zp)[0])
            expected = int(quant.multiply_by_quantized_multiplier(acc, m, -right)) + zp
            assert _fast_output_lanes(acc, multiplier, shift_right, rounding) == expected, (acc, m, right, zp)


def test_fast_output_stage_refuses_shifts_it_cannot_do():
    assert quant.fast_output_rounding([-1, -22], 5) is not None
    assert quant.fast_output_rounding([-1, 0], 5) is None  # no division: the sign trick is off by one
    assert quant.fast_output_rounding([-23], 5) is None  # the rounding term could overflow
    assert quant.fast_output_rounding([2], 5) is None  # a left shift
    assert quant.fast_output_scales([1 << 30, -1], [-3, -3], 5) is None  # the sign trick needs multipliers >= 0


def _channel(m, s, low, high, zp=-5, act=(-128, 127), kernel_bias=0, weight_reach=1000):
    """fast_channel_rows for one channel: (row, constant, bias shift) or None."""
    fast = quant.fast_channel_rows([m], [s], zp, *act, [low], [high], [kernel_bias], [weight_reach])
    if fast is None:
        return None
    return tuple(int(v) for v in fast.scales[0]), bool(fast.constant[0]), int(fast.bias_shift[0])


def _reference(accs, m, s, zp=-5, act=(-128, 127)):
    return quant.requantized(accs, m, s, zp, *act)


def _kernel(accs, row, act=(-128, 127)):
    """The C's output stage as test_fast_output_stage_equals_tflite_for_every_fast_shift has
    it, then the clamp."""
    return np.clip(np.array([_fast_output_stage(a, row[0], row[2], row[1]) for a in np.asarray(accs).tolist()]), *act)


def test_fast_output_stage_is_the_kernels():
    rng = np.random.default_rng(11)
    for _ in range(2000):
        row = (int(rng.integers(0, 1 << 31)), int(rng.integers(-(1 << 29), 1 << 29)), int(rng.integers(1, 23)))
        acc = int(rng.integers(-(1 << 30) + 1, 1 << 30))
        assert int(quant.fast_output_stage(acc, row)) == _fast_output_stage(acc, row[0], row[2], row[1])


def test_a_constant_row_gives_its_value_for_any_accumulator():
    accs = np.concatenate([np.arange(-1000, 1000), [-(1 << 30) + 1, (1 << 30) - 1, -(1 << 29), 1 << 29]])
    for value in range(-128, 128):
        row = quant.constant_scale_row(value)
        assert (quant.fast_output_stage(accs, row) == value).all(), value
        assert _fast_output_stage(-7, row[0], row[2], row[1]) == _fast_output_stage(7, row[0], row[2], row[1]) == value


@pytest.mark.parametrize("m, s, zp, act", [
    (0, 0, -5, (-128, 127)),  # a multiplier flushed to zero: the output is the zero point
    (0, 0, -128, (-128, 127)),
    (1 << 30, -27, 3, (-128, 127)),  # the real stem's dead channel: a right shift of 27
    (1_500_000_000, -24, -128, (-128, 127)),
    (1_500_000_000, -12, -20, (0, 50)),  # a live scale whose every output is clamped below
])
def test_dead_channels_become_constants_equal_to_the_reference_everywhere(m, s, zp, act):
    low, high = -(1 << 20), 1 << 20
    if act == (0, 50):
        low, high = -(1 << 22), -(1 << 21)
    row, constant, _ = _channel(m, s, low, high, zp, act)
    assert constant and row[0] == 0
    accs = np.arange(low, high + 1)  # every accumulator of the range
    assert (np.clip(quant.fast_output_stage(accs, row), *act) == _reference(accs, m, s, zp, act)).all()


def test_a_constant_channel_takes_no_accumulator_bound_but_its_own_weights():
    """Its bias is left out of the kernel's accumulator: only the weights' partial sums count."""
    huge = 2_000_000_000  # a dead channel's bias, in the tiny scale of its weights
    assert _channel(1 << 30, -30, huge - 1000, huge + 1000, kernel_bias=huge)[1]
    assert _channel(1 << 30, -30, huge - 1000, huge + 1000, kernel_bias=huge, weight_reach=1 << 30) is None


def test_live_channels_keep_the_plain_rows():
    m, s, zp = 1_234_567_890, -9, 17
    row, constant, shift = _channel(m, s, -(1 << 20), 1 << 20, zp)
    assert not constant and shift == 0 and row == tuple(int(v) for v in quant.fast_output_scales([m], [s], zp)[0])


@pytest.mark.parametrize("m, s, zp, low, high", [
    (1 << 30, -29, 7, 1_610_612_736 - 300_000, 1_610_612_736 + 300_000),  # a dead channel's huge bias
    (1_900_000_000, -25, 0, 18_000_000, 20_000_000),
    (0x7FFFFFFF, -31, 0, -(1 << 30) - (1 << 21), -(1 << 30) + (1 << 21)),  # the step at a negative threshold
])
def test_two_valued_channels_become_steps_at_the_reference_threshold(m, s, zp, low, high):
    """The kernel's accumulator is the true one minus the threshold: checked on every
    accumulator of the range."""
    row, constant, threshold = _channel(m, s, low, high, zp, kernel_bias=low)
    accs = np.arange(low, high + 1)
    reference = _reference(accs, m, s, zp)
    assert not constant and row[0] == 0 and len(set(reference.tolist())) == 2
    assert (np.clip(quant.fast_output_stage(accs - threshold, row), -128, 127) == reference).all()
    assert (np.array([_fast_output_stage(int(a), row[0], row[2], row[1]) for a in (accs - threshold)[::997]])
            == reference[::997]).all()


def test_refused_channels():
    assert _channel(1 << 30, -9, -(1 << 31) - 1, 0) is None  # the reference's accumulator could wrap
    assert _channel(1 << 30, -9, -(1 << 30), 1 << 30, kernel_bias=1 << 30) is None  # too large for 32 bits
    assert _channel(1 << 30, 2, -(1 << 20), 1 << 20) is None  # a live left shift
    assert _channel(-1, -9, -(1 << 20), 1 << 20) is None  # a negative multiplier
    assert _channel(1 << 30, 30, -(1 << 20), 1 << 20) is None  # a left shift that wraps: not monotonic


def test_rederived_rows_equal_the_reference_on_every_accumulator():
    """Right shifts beyond MAX_FAST_RIGHT_SHIFT whose outputs move (a dead channel's large
    bias puts its accumulators far from zero): each row is checked on every accumulator of
    its range."""
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 3:
        right = int(rng.integers(quant.MAX_FAST_RIGHT_SHIFT + 1, quant.MAX_FAST_RIGHT_SHIFT + 3))
        m, zp = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-128, 128))
        width = 1 << 24
        low = int(rng.integers(-(1 << 29), (1 << 29) - width))
        reference = _reference(np.array([low, low + width]), m, -right, zp)
        if reference[1] - reference[0] < 2:  # constants and steps have rows of their own
            continue
        row, constant, shift = _channel(m, -right, low, low + width, zp)
        assert not constant and shift == 0 and row[2] == quant.MAX_FAST_RIGHT_SHIFT
        accs = np.arange(low, low + width + 1)
        assert (np.clip(quant.fast_output_stage(accs, row), -128, 127) == _reference(accs, m, -right, zp)).all()
        checked += 1


def test_rederived_rows_against_random_and_edge_accumulators():
    rng = np.random.default_rng(6)
    for _ in range(20):
        right = int(rng.integers(quant.MAX_FAST_RIGHT_SHIFT + 1, 32))
        m, zp = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-128, 128))
        low, high = sorted(int(v) for v in rng.integers(-(1 << 30) + 1, 1 << 30, 2))
        result = _channel(m, -right, low, high, zp)
        if result is None:
            continue
        accs = np.concatenate([rng.integers(low, high + 1, 300), [low, high, low + 1, high - 1]])
        # the reference's thresholds, and their neighbours: where a wrong row would differ
        values = np.arange(_reference(low, m, -right, zp) + 1, _reference(high, m, -right, zp) + 1)
        steps = quant.first_reaching(lambda a, _: _reference(a, m, -right, zp), values[None, :], [low], [high])[0]
        accs = np.concatenate([accs, steps, steps - 1])
        accs = accs[(accs >= low) & (accs <= high)]
        row, _, threshold = result  # a step row reads the accumulator minus its threshold
        assert (_kernel(accs - threshold, row) == _reference(accs, m, -right, zp)).all(), (m, right, zp, low, high)


def test_same_nondecreasing_is_a_proof_not_a_sample():
    def f(x):
        return np.floor_divide(x, 7)

    def moved(x):  # one step taken a single accumulator early
        return np.where(x == 7 * 500 - 1, 500, f(x))

    assert quant.same_nondecreasing(f, f, -10_000, 10_000)
    assert not quant.same_nondecreasing(f, moved, -10_000, 10_000)
    assert not quant.same_nondecreasing(f, lambda x: f(x + 1), -10_000, 10_000)


def test_first_reaching_corrects_a_bracket_that_misses():
    """A bracket is a hint: rows whose bracket misses the step (below it, above it, or of
    width zero) still get the first x reaching each value, as by brute force; values never
    reached give high + 1."""
    divisors = np.array([7, 3, 11, 5])
    low, high = np.array([-500, -40, 0, 30]), np.array([700, 90, 1000, 30])

    def f(x, rows):
        return np.floor_divide(x, divisors[rows, None])

    values = np.arange(-30, 40)[None, :]
    xs = np.arange(-500, 1001)
    brute = [[xs[(xs >= lo) & (xs <= hi) & (xs // d >= v)].min(initial=hi + 1) for v in values[0]]
             for d, lo, hi in zip(divisors, low, high)]
    exact = np.array(brute)
    near = (exact.copy(), exact.copy())
    near[0][0], near[1][0] = exact[0] + 5, exact[0] + 9  # above the step
    near[0][1], near[1][1] = exact[1] - 9, exact[1] - 5  # below it
    near[0][2] = near[1][2] = exact[2] + 1  # width zero, one off
    found = quant.first_reaching(f, values, low, high, (np.clip(near[0], low[:, None], high[:, None]),
                                                        np.clip(near[1], low[:, None], high[:, None])))
    assert np.array_equal(found, exact)
    assert np.array_equal(quant.first_reaching(f, values, low, high), exact)


def _host_expf():
    import ctypes
    import ctypes.util

    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.expf.restype, libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda v: np.float32(libm.expf(float(v)))


def test_expf_is_correctly_rounded():
    from decimal import Context, Decimal

    rng = np.random.default_rng(7)
    for v in rng.uniform(-30, 30, 3000).astype(np.float32):
        got, exact = quant.expf(v), Decimal(float(v)).exp(Context(prec=60))
        below, above = np.nextafter(got, np.float32(-np.inf)), np.nextafter(got, np.float32(np.inf))
        error = abs(Decimal(float(got)) - exact)
        assert error <= abs(Decimal(float(below)) - exact) and error <= abs(Decimal(float(above)) - exact), v
    assert quant.expf(np.float32(0.0)) == np.float32(1.0)
    with np.errstate(over="ignore"):
        assert quant.expf(np.float32(88.73)) == np.float32(np.inf)  # past the largest float32


def test_logistic_tables_equal_tflites_recipe_on_this_hosts_libm():
    """TFLite's LUTPopulate with the host C library's expf (glibc: not correctly rounded on
    about 0.05% of inputs) gives the same tables as ours, over many scales and zero points."""
    from mnv2gen import ir

    host_expf = _host_expf()
    rng = np.random.default_rng(3)
    compared = 0
    for _ in range(300):
        input = ir.Tensor(name="x", shape=(1,), dtype="int8",
                          quant=ir.Quantization(scale=(float(np.float32(10 ** rng.uniform(-3, 0))),),
                                                zero_point=(int(rng.integers(-128, 128)),)))
        output = ir.Tensor(name="y", shape=(1,), dtype="int8",
                           quant=ir.Quantization(scale=(1 / 256,), zero_point=(-128,)))
        try:
            ours = quant.logistic_table(input, output)
        except ValueError:
            continue
        theirs = [quant._logistic_entry(host_expf(-np.float32(np.float32(input.scale) * np.float32(v - input.zero_point))),
                                        output) for v in range(-128, 128)]
        assert ours.tolist() == theirs
        compared += 1
    assert compared >= 290


def test_roundf_is_c_roundf_at_the_halves_and_just_below():
    import ctypes

    libm = ctypes.CDLL("libm.so.6")
    libm.roundf.restype, libm.roundf.argtypes = ctypes.c_float, [ctypes.c_float]
    below_half = np.nextafter(np.float32(0.5), np.float32(0))  # 0.5 - 2^-25
    values = [below_half, -below_half, 0.5, -0.5, 1.5, 2.5, -2.5, np.float32(8388607.5), np.float32(16777215.0),
              np.nextafter(np.float32(1.5), np.float32(0)), np.float32(3e38), np.float32(-3e38), 0.0]
    rng = np.random.default_rng(0)
    values += list(rng.standard_normal(2000).astype(np.float32) * np.float32(100))
    for value in values:
        assert quant.roundf(np.float32(value)) == np.float32(libm.roundf(float(value))), value


def _unsigned_stage(acc, multiplier, right, rounding):
    """The C's scaled_doubled_unsigned: the fast stage without acc's sign."""
    return (((rounding << 32) + 2 * acc * multiplier + (1 << 31)) >> 32) >> right


def test_the_unsigned_stage_clamped_equals_tflite_where_act_min_is_at_least_the_zero_point():
    """quant.unsigned_rounding's proof, on every fast shift: plain rows with the edge
    multipliers and random ones, every zero point with act_min from it up, every accumulator
    of [-2^(r+1), 2^(r+1)] (where the sign moves the rounding) and the edges of |acc| < 2^30."""
    rng = np.random.default_rng(13)
    edges = np.array([-(1 << 30) + 1, -(1 << 29), -2, -1, 0, 1, (1 << 30) - 1], dtype=np.int64)
    for right in range(1, quant.MAX_FAST_RIGHT_SHIFT + 1):
        accs = np.concatenate([np.arange(-(2 << right), (2 << right) + 1, max(1, (4 << right) // 4096)), edges,
                               rng.integers(-(1 << 30) + 1, 1 << 30, size=64)])
        for m in [0, 1, 1 << 30, (1 << 31) - 1, *rng.integers(1 << 30, 1 << 31, size=2).tolist()]:
            for zp in (-128, -1, 0, 5, 127):
                row = tuple(int(v) for v in quant.fast_output_scales([m], [-right], zp)[0])
                unsigned = quant.fast_output_stage(accs, row, signed=False)
                assert (unsigned == np.array([_unsigned_stage(a, row[0], row[2], row[1]) for a in accs.tolist()])).all()
                for act_min in sorted({zp, min(zp + 3, 127), 127}):
                    act = (act_min, 127)
                    assert (np.clip(unsigned, *act) == _reference(accs, m, -right, zp, act)).all(), (right, m, zp, act)


def test_unsigned_rounding_only_where_proven():
    """The layer's choice: plain and constant rows with act_min >= zero point; not where the
    activation lets outputs below the zero point through (the sign then shows: -1 rounds to
    zp - 1 with it, zp without), nor with a step row (which is its sign)."""
    m, s, zp = 1 << 30, -2, 3
    live = quant.fast_channel_rows([m, 0], [s, s], zp, zp, 127, [-4000, -10], [4000, 10], [0, 0], [4000, 10])
    assert live is not None and not live.signed.any()
    assert quant.unsigned_rounding(live, zp, act_min=zp) and quant.unsigned_rounding(live, zp, act_min=zp + 1)
    assert not quant.unsigned_rounding(live, zp, act_min=zp - 1)
    row = live.scales[0]
    assert quant.fast_output_stage(-4, row) == zp - 1 != quant.fast_output_stage(-4, row, signed=False)
    low, high = -(1 << 30) - (1 << 21), -(1 << 30) + (1 << 21)  # the step of the test above
    step = quant.fast_channel_rows([0x7FFFFFFF], [-31], 0, -128, 127, [low], [high], [low], [1000])
    assert step is not None and step.signed.all() and not quant.unsigned_rounding(step, 0, act_min=0)
