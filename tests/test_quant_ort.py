"""ONNX Runtime's output stage in fixed point (mnv2gen.quant_ort): every row the proof accepts
gives ONNX Runtime's output on every accumulator of its channel's range, checked here
exhaustively with no use of the proof's own threshold argument; the rows it cannot prove stay
float."""

from __future__ import annotations

import numpy as np
import pytest

from mnv2gen import quant_ort


def _float_rows(scales, zero_point: int) -> np.ndarray:
    rows = np.zeros((len(scales), 3), dtype=np.int32)
    rows[:, 0] = np.asarray(scales, dtype=np.float32).view(np.int32)
    rows[:, 1], rows[:, 2] = zero_point, quant_ort.FLOAT_RIGHT
    return rows


def _exhaustive_mismatches(found, scales, zero_point, act_min, act_max, low, high) -> list[int]:
    """The channels whose fixed row differs from ONNX Runtime on some accumulator of their
    range (every one evaluated), and the float rows left other than the input's."""
    wrong = []
    for c in range(len(scales)):
        if not found.fixed[c]:
            if not (found.rows[c] == _float_rows(scales[c:c + 1], zero_point)[0]).all() or found.deltas[c]:
                wrong.append(c)
            continue
        acc = np.arange(int(low[c]), int(high[c]) + 1, dtype=np.int64)
        ours = quant_ort.fixed_stage(acc, found.rows[c].astype(np.int64), int(found.deltas[c]), act_min, act_max)
        theirs = quant_ort.ort_output(acc, scales[c], zero_point, act_min, act_max)
        if not np.array_equal(ours, theirs):
            wrong.append(c)
    return wrong


def test_ort_output_clamps_before_rounding_as_after_where_both_are_defined():
    """ONNX Runtime clamps the float product before rounding; on integer bounds that equals
    rounding then clamping wherever the product fits an int64, and keeps act_max beyond."""
    rng = np.random.default_rng(3)
    acc = rng.integers(-2**31, 2**31, (64, 4000))
    scales = (2.0 ** rng.uniform(-30, 0, 64)).astype(np.float32)[:, None]
    after = np.clip(np.rint(acc.astype(np.float32) * scales).astype(np.int64) - 5, -128, 100)
    assert np.array_equal(quant_ort.ort_output(acc, scales, -5, -128, 100), after)
    assert quant_ort.ort_output([2**31 - 1, -2**31], np.float32(2.0**60), -5, -128, 100).tolist() == [100, -128]


def _fixed_rows(scales, zero_point, act_min, act_max, low, high, reach=0):
    return quant_ort.fixed_rows(scales, zero_point, act_min, act_max, low, high,
                                np.full(len(scales), reach, dtype=np.int64), _float_rows(scales, zero_point))


@pytest.mark.parametrize("zero_point, act_min, act_max", [(-128, -128, 127), (3, -128, 127), (-20, -20, 127),
                                                          (0, 0, 100)])
def test_proven_rows_equal_onnxruntime_on_every_accumulator(zero_point, act_min, act_max):
    """Layers as MobileNetV2's: 16 channels, scales around 2^-12 .. 2^-6, accumulator ranges
    up to about 2^17 wide, both signs: most channels get a fixed row, all of them exact."""
    rng = np.random.default_rng(zero_point + 1000)
    scales = (2.0 ** rng.uniform(-12, -6, 16)).astype(np.float32)
    reach = (255 / scales * rng.uniform(0.3, 1.2, 16)).astype(np.int64)  # outputs over most of the range
    centre = rng.integers(-2000, 2000, 16)
    low, high = centre - reach // 2, centre + reach // 2
    found = _fixed_rows(scales, zero_point, act_min, act_max, low, high)
    assert found.fixed.sum() >= 12, found.fixed
    assert _exhaustive_mismatches(found, scales, zero_point, act_min, act_max, low, high) == []


def test_ties_and_accumulators_past_2_24():
    """Exact ties x.5 (scales 1/4 .. 1/64: RNE's even neighbour alternates), accumulators past
    2^24 where fl(acc) itself rounds, and a scale with double-rounding cases: whatever the
    proof accepts is exact on every accumulator, and the alternating ties of scale 1/2 (steps
    1 and 3 accumulators apart, which no line has) stay float."""
    scales = np.array([0.5, 0.25, 2.0**-6, 2.0**-20, 2.0**-20, 2.0**-19, 0.7071067811865476 / 2**16,
                       0.7071067811865476 / 2**16], dtype=np.float32)
    low = np.array([-128, -128, -4000, 2**25 - 2**20, -(2**25) - 2**20, 2**24 - 2**19, 2**22, -(2**22) - 2**20])
    high = np.array([127, 127, 4000, 2**25 + 2**20, -(2**25) + 2**20, 2**24 + 2**19, 2**22 + 2**20, -(2**22)])
    found = _fixed_rows(scales, 0, -128, 127, low, high)
    assert not found.fixed[:3].any()  # ties alternate at 1/2, 1/4, 1/64: no line steps so
    assert found.fixed[3:6].all()
    assert _exhaustive_mismatches(found, scales, 0, -128, 127, low, high) == []


def test_a_shift_stays_within_its_room():
    """A channel whose partial sums already reach the fast stage's limit gets no bias shift."""
    scales = np.array([2.0**-9 * 1.37], dtype=np.float32)
    low, high = np.array([-30000]), np.array([30000])
    found = _fixed_rows(scales, -128, -128, 127, low, high, reach=quant_ort.quant.FAST_ACCUMULATOR_LIMIT - 1)
    assert found.deltas[0] == 0
    assert _exhaustive_mismatches(found, scales, -128, -128, 127, low, high) == []
