"""The SIMD kernels' blocks (codegen/blocks.py): every packer lays its constants out where its
layout's offsets (the C's <NAME>_BIAS, _WEIGHTS, _SCALES(units), _WORDS(units)) say."""

from __future__ import annotations

import numpy as np
import pytest

from mnv2gen.codegen import blocks
from mnv2gen.codegen.kernels import ROW_KERNELS, Variant, row_kernels


def offset(layout: blocks.BlockLayout, field: str, units: int) -> int:
    fixed, per_unit = {name: (fixed, per_unit) for name, fixed, per_unit in layout.offsets()}[field]
    return fixed + per_unit * units


def constants(out_c: int, depth: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    bias = rng.integers(-(2**20), 2**20, out_c)
    weights = rng.integers(-128, 128, (out_c, depth)).astype(np.int8)
    scales = rng.integers(1, 2**30, (out_c, blocks.SCALE_WORDS))
    return bias, weights, scales


def assert_laid_out(layout, packed, units, bias, scales, channels):
    """Biases (as packed: doubled or not) and scales of `channels` channels where the layout says."""
    words = offset(layout, "WORDS", units)
    assert packed.size % words == 0
    per_block = packed.reshape(-1, words)
    assert per_block.shape[0] == -(-channels // layout.channels)
    for c in range(channels):
        block, j = per_block[c // layout.channels], c % layout.channels
        assert block[offset(layout, "BIAS", units) + j] == bias[c]
        start = offset(layout, "SCALES", units) + j * blocks.SCALE_WORDS
        assert list(block[start:start + blocks.SCALE_WORDS]) == list(scales[c])


@pytest.mark.parametrize("in_c", [8, 16])
def test_narrow_blocks(in_c):
    bias, weights, scales = constants(5, in_c)
    packed = blocks.narrow_blocks(bias, weights, scales)
    assert_laid_out(blocks.NARROW_CHANNELS, packed, in_c // 4, 2 * bias, scales, 5)


@pytest.mark.parametrize("out_c", [6, 7])
def test_pair_blocks(out_c):
    bias, weights, scales = constants(out_c, 27)  # the stem's 3x3x3
    packed = blocks.pair_blocks(bias, blocks.padded_rows(weights), scales)
    assert_laid_out(blocks.CHANNEL_PAIRS, packed, 28 // 4, 2 * bias, scales, out_c)


@pytest.mark.parametrize("out_c", [8, 9])
def test_word_pair_blocks(out_c):
    bias, weights, scales = constants(out_c, 24)
    packed = blocks.word_pair_blocks(bias, weights, scales)
    assert_laid_out(blocks.WORD_PAIRS, packed, 24 // 4, bias, scales, out_c)
    # per word of input the pair's two words of int8 weights, in the order of the input
    per_block = packed.reshape(-1, offset(blocks.WORD_PAIRS, "WORDS", 24 // 4))
    first = offset(blocks.WORD_PAIRS, "WEIGHTS", 0)
    for c in range(out_c):
        words = per_block[c // 2, first + c % 2:first + 2 * (24 // 4):2]
        assert np.ascontiguousarray(words).view(np.int8).tolist() == weights[c].astype(np.int8).tolist()


def test_depthwise_blocks():
    channels, taps = 12, 9
    bias, weights, scales = constants(channels, taps)
    depthwise = weights.T.reshape(1, 3, 3, channels)
    packed = blocks.depthwise_blocks(2 * bias, depthwise, scales)
    assert_laid_out(blocks.DEPTHWISE_GROUPS, packed, taps, 2 * bias, scales, channels)


def halves(word) -> list[int]:
    """A word's two signed 16-bit halves, low first."""
    return [(int(word) >> shift & 0xFFFF ^ 0x8000) - 0x8000 for shift in (0, 16)]


def test_depthwise_paired_blocks():
    """The 3x3 window's taps in PAIRED_3X3_TAPS' order: every tap once; per pair a word per
    channel (the first tap's doubled weight low, the second's high), the last tap alone."""
    channels = 12
    bias, weights, scales = constants(channels, 9)
    depthwise = weights.T.reshape(1, 3, 3, channels)
    packed = blocks.depthwise_paired_blocks(2 * bias, depthwise, scales)
    assert_laid_out(blocks.DEPTHWISE_GROUPS, packed, 9, 2 * bias, scales, channels)
    assert sorted(k for taps in blocks.PAIRED_3X3_TAPS for k in taps) == list(range(9))
    per_block = packed.reshape(-1, offset(blocks.DEPTHWISE_GROUPS, "WORDS", 9))
    for c in range(channels):
        group, j = per_block[c // 4], c % 4
        word = offset(blocks.DEPTHWISE_GROUPS, "WEIGHTS", 0)
        for taps in blocks.PAIRED_3X3_TAPS:
            if len(taps) == 2:
                assert halves(group[word + j]) == [2 * int(weights[c, taps[0]]), 2 * int(weights[c, taps[1]])]
                word += 4
            else:  # two words in SXTB16's order: channels 0, 2 then 1, 3
                assert halves(group[word + j % 2])[j // 2] == 2 * int(weights[c, taps[0]])
                word += 2


@pytest.mark.parametrize("out_c", [5, 16])
def test_field_vector_blocks(out_c):
    bias, weights, scales = constants(out_c, 27)  # the stem's 3x3x3: two vectors
    packed = blocks.field_vector_blocks(bias, weights.reshape(out_c, 3, 3, 3), scales)
    assert_laid_out(blocks.FIELD_VECTORS, packed, 2, bias, scales, out_c)
    # per channel its weights in the field's order, then zeros to the end of the second vector
    per_block = packed.reshape(out_c, -1)
    first = offset(blocks.FIELD_VECTORS, "WEIGHTS", 0)
    for c in range(out_c):
        field = np.ascontiguousarray(per_block[c, first:first + 2 * 16 // 4]).view(np.int8)
        assert field.tolist() == weights[c].tolist() + [0] * 5


def test_depthwise_sixteen_blocks():
    channels, taps = 32, 9
    bias, weights, scales = constants(channels, taps)
    packed = blocks.depthwise_sixteen_blocks(bias, weights.T.reshape(1, 3, 3, channels), scales)
    layout = blocks.DEPTHWISE_SIXTEENS
    per_block = packed.reshape(-1, offset(layout, "WORDS", taps))
    assert per_block.shape[0] == 2
    for c in range(channels):
        block = per_block[c // 16]
        order, lane = divmod(list(blocks.SIXTEEN_LANES).index(c % 16), 4)  # its vector and lane
        assert block[offset(layout, "BIAS", taps) + 4 * order + lane] == bias[c]
        at = offset(layout, "SCALES", taps) + 12 * order + lane  # multipliers, roundings, -right
        assert [block[at], block[at + 4], block[at + 8]] == [scales[c][0], scales[c][1], -scales[c][2]]
        tap_bytes = np.ascontiguousarray(block[offset(layout, "WEIGHTS", 0):offset(layout, "SCALES", taps)])
        assert tap_bytes.view(np.int8).reshape(taps, 16)[:, c % 16].tolist() == weights[c].tolist()


def test_every_variant_has_a_portable_kernel_per_stage_kind():
    for variant in Variant:
        # the portable ones: in every variant, on the plain arrays (Helium's POINTWISE_VECTORS
        # reads them too, but needs the fast output stage's `scales`)
        kinds = [kernel.stage for kernel in row_kernels(variant)
                 if kernel.layout is None and set(kernel.variants) == set(Variant)]
        assert sorted(kind.name for kind in kinds) == ["CONV", "CONV_1X1", "DEPTHWISE"], variant
    assert len({kernel.name for kernel in ROW_KERNELS}) == len(ROW_KERNELS)
