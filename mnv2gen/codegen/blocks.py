"""The layouts of conv_params.blocks, the SIMD kernels' constants, and their packing.

A block holds what a kernel needs for a few output channels, in the order it reads them, so
one pointer walks a layer's blocks: a word of bias per channel, the channels' weights (so
many words per unit of the layer: an input word, a patch word, a tap), then the channels'
rows of `scales` (SCALE_WORDS each). `BlockLayout` describes each layout once; the numpy
packing below goes through it, and the templates render its offsets into the macros the C
kernels index blocks with (`<NAME>_WEIGHTS`, `<NAME>_SCALES(units)`, `<NAME>_WORDS(units)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A channel's row of `scales`: TFLite's (quant.fast_output_scales) multiplier, rounding, right
# shift; ONNX Runtime's (float_scale_rows) its float32 scale's bits, the zero point, 0.
SCALE_WORDS = 3


@dataclass(frozen=True)
class BlockLayout:
    name: str  # the prefix of its C macros
    channels: int  # output channels per block
    weights_per_unit: int  # words of weights per unit of the layer
    unit: str  # what the weights are counted in
    description: str  # what the weights are, for the C comment

    def offsets(self) -> list[tuple[str, int, int]]:
        """(field, fixed words, words per unit) of where each field starts, and the block's size."""
        scales = (self.channels, self.weights_per_unit)
        return [("BIAS", 0, 0), ("WEIGHTS", self.channels, 0), ("SCALES", *scales),
                ("WORDS", self.channels * (1 + SCALE_WORDS), self.weights_per_unit)]

    def pack(self, bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """The blocks, as int32 words, of `bias` [blocks * channels], `weights` [blocks, units *
        weights_per_unit] (already in the kernel's order) and `scales` [blocks * channels, 3]."""
        blocks = weights.shape[0]
        assert weights.shape[1] % self.weights_per_unit == 0 and bias.size == blocks * self.channels
        return as_int32_words(np.concatenate([
            bias.astype(np.int64).reshape(blocks, self.channels),
            weights.astype(np.int64),
            scales.astype(np.int64).reshape(blocks, self.channels * SCALE_WORDS),
        ], axis=1))


NARROW_CHANNELS = BlockLayout(
    "NARROW", 1, 2, "input word",
    "per output channel: twice its folded bias, its weights doubled as halfword pairs, its scales")
CHANNEL_PAIRS = BlockLayout(
    "PAIRS", 2, 4, "word of the receptive field (padded with zeros to whole words)",
    "per pair of output channels (an odd last one paired with zeros): the two doubled folded biases, the two "
    "channels' doubled weight pairs interleaved (one LDRD loads both channels' pair), their scales")
WORD_PAIRS = BlockLayout(
    "WORD_PAIRS", 2, 2, "input word",
    "per pair of output channels (an odd last one paired with zeros): the two folded biases, per word of input "
    "the two channels' words of int8 weights (one LDRD loads both), their scales")
DEPTHWISE_GROUPS = BlockLayout(
    "DEPTHWISE_GROUP", 4, 2, "tap",
    "per group of four channels: twice (bias - input zero point * sum of the channel's kernel), every tap read "
    "(border windows read the zero point), per tap the group's weights doubled as two halfword pairs, their scales")

# Helium's VMLADAV reads 16 bytes of the field and of the weights at a time.
VECTOR_BYTES = 16
FIELD_VECTORS = BlockLayout(
    "FIELD_VECTORS", 1, VECTOR_BYTES // 4, "vector of the receptive field (zero-padded to whole vectors)",
    "per output channel: its folded bias, its int8 weights in the receptive field's order ([ky][kx][c]) filled "
    "up with zeros to whole vectors of 16 bytes, its scales")

DEPTHWISE_SIXTEENS = BlockLayout(
    "DEPTHWISE_SIXTEEN", 16, VECTOR_BYTES // 4, "tap",
    "per sixteen channels, in the four lane orders VMULLB/VMULLT and VMOVLB/VMOVLT leave their products in "
    "(channels 0, 4, 8, 12; 2, 6, 10, 14; 1, 5, 9, 13; 3, 7, 11, 15): bias - input zero point * sum of the "
    "channel's kernel; per tap the sixteen channels' int8 weights; per lane order the multipliers, the "
    "roundings and the right shifts negated, a vector each")

LAYOUTS = (NARROW_CHANNELS, CHANNEL_PAIRS, WORD_PAIRS, DEPTHWISE_GROUPS, FIELD_VECTORS, DEPTHWISE_SIXTEENS)

# The channel of each lane of DEPTHWISE_SIXTEENS' four int32 vectors, in order.
SIXTEEN_LANES = np.array([0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15])


def float_scale_rows(scales: np.ndarray, zero_point: int) -> np.ndarray:
    """ONNX Runtime's output stage as rows of `scales` [channels, SCALE_WORDS] int32: the
    channel's float32 scale S[c] (its bits), the output zero point, and 0 (a right shift
    no fixed-point row has: templates/dsp/ort_output_stage.c.j2 tells the two apart by it),
    so the SIMD kernels walk the same blocks in both arithmetics."""
    rows = np.zeros((len(scales), SCALE_WORDS), dtype=np.int32)
    rows[:, 0] = np.asarray(scales, dtype=np.float32).view(np.int32)
    rows[:, 1] = zero_point
    return rows


def padded_rows(weights: np.ndarray) -> np.ndarray:
    """Weights [out_c, ...] flattened per output channel and padded with zeros to a multiple
    of four: the kernels read whole words of a patch, whose extra bytes then count for 0."""
    rows = weights.reshape(weights.shape[0], -1)
    return np.pad(rows, ((0, 0), (0, -rows.shape[1] % 4)))


def _doubled_pairs(weights: np.ndarray) -> np.ndarray:
    """Weights [..., n] (n a multiple of 4), doubled, as int32 words of two int16 halves in
    the order SXTB16 splits four input bytes into: per four inputs, (0, 2) then (1, 3)."""
    doubled = 2 * weights.reshape(*weights.shape[:-1], -1, 4).astype(np.int64)
    halves = doubled & 0xFFFF
    pairs = np.stack([halves[..., 0] | halves[..., 2] << 16, halves[..., 1] | halves[..., 3] << 16], axis=-1)
    return pairs.reshape(*weights.shape[:-1], -1)


def as_int32_words(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)



def _filled_up(multiple: int, bias: np.ndarray, weights: np.ndarray, scales: np.ndarray):
    """bias, weights [out_c, ...] and scales filled up with zero channels (their scale a copy
    of the last, so still valid) to a multiple of `multiple` output channels: kernels that
    take channels in groups compute them and do not store their outputs."""
    padding = -weights.shape[0] % multiple
    return (np.append(bias.astype(np.int64), np.zeros(padding, dtype=np.int64)),
            np.concatenate([weights, np.zeros((padding, *weights.shape[1:]), dtype=weights.dtype)]),
            np.concatenate([scales, np.repeat(scales[-1:], padding, axis=0)]))


def narrow_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """NARROW_CHANNELS of a 1x1 convolution's weights [out_c, in_c]."""
    out_c = weights.shape[0]
    return NARROW_CHANNELS.pack(2 * folded_bias.astype(np.int64), _doubled_pairs(weights.reshape(out_c, -1)), scales)


def pair_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """CHANNEL_PAIRS of a convolution's padded_rows [out_c, patch bytes]."""
    bias, weights, scales = _filled_up(2, folded_bias, weights, scales)
    channel_pairs = weights.shape[0] // 2
    pairs = _doubled_pairs(weights.reshape(weights.shape[0], -1))  # [out_c, input pairs]
    interleaved = pairs.reshape(channel_pairs, 2, -1).transpose(0, 2, 1).reshape(channel_pairs, -1)
    return CHANNEL_PAIRS.pack(2 * bias, interleaved, scales)


def interleaved_rows(rows: np.ndarray, group: int) -> np.ndarray:
    """int8 weight rows [n, depth] (depth a multiple of four) regrouped for the DSP kernels'
    dot products over `group` rows at a time: per group of rows (the last filled up with zero
    rows), per word of input the group's words, so one pointer walks them. [groups, group *
    depth / 4] words."""
    n, depth = rows.shape
    padded = np.concatenate([rows, np.zeros((-n % group, depth), dtype=rows.dtype)]).astype(np.int8)
    octets = padded.view(np.uint8).reshape(-1, group, depth // 4, 4).astype(np.int64)  # [group, row, word, byte]
    words = octets[..., 0] | octets[..., 1] << 8 | octets[..., 2] << 16 | octets[..., 3] << 24
    return words.transpose(0, 2, 1).reshape(-1, group * depth // 4)


def interleaved_quads(rows: np.ndarray) -> np.ndarray:
    """FULLY_CONNECTED's weights for dot_quad_words: four rows at a time."""
    return interleaved_rows(rows, 4)


def word_pair_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """WORD_PAIRS of a 1x1 convolution's weights [out_c, in_c]."""
    bias, weights, scales = _filled_up(2, folded_bias, weights.reshape(weights.shape[0], -1), scales)
    return WORD_PAIRS.pack(bias, interleaved_rows(weights, 2), scales)


def depthwise_blocks(doubled_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """DEPTHWISE_GROUPS of a depthwise convolution's weights [1, kh, kw, channels] (channels a
    multiple of four), `doubled_bias` already doubled and folded."""
    taps, channels = weights.shape[1] * weights.shape[2], weights.shape[3]
    groups = channels // 4
    pairs = _doubled_pairs(weights.reshape(taps, groups, 4))  # [tap, group, 2]
    return DEPTHWISE_GROUPS.pack(doubled_bias, pairs.transpose(1, 0, 2).reshape(groups, 2 * taps), scales)


# DEPTHWISE_GROUPS' 3x3 window reads its nine taps (ky * 3 + kx) in this order, two at a time
# where a pair is given: the two taps' input words are packed into SMLAD's halfword pairs
# (per channel: the first tap low, the second high), the last tap alone as any other. The
# order follows its row pointers: each row's taps right to left, the last one advancing it.
PAIRED_3X3_TAPS = ((2, 1), (0, 5), (4, 3), (8, 7), (6,))


def depthwise_paired_blocks(doubled_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """DEPTHWISE_GROUPS of a 3x3 depthwise convolution's weights [1, 3, 3, channels] in
    PAIRED_3X3_TAPS' order: per pair of taps a word per channel of the group (the two taps'
    doubled weights, the first in the low half), per single tap its two words as
    depthwise_blocks has them. The same 18 words a group as depthwise_blocks."""
    channels = weights.shape[3]
    groups = channels // 4
    taps = weights.reshape(9, groups, 4).astype(np.int64)
    halves = (2 * taps) & 0xFFFF
    words = []
    for pair in PAIRED_3X3_TAPS:
        if len(pair) == 2:
            words.append(halves[pair[0]] | halves[pair[1]] << 16)  # [group, channel]
        else:
            words.append(_doubled_pairs(weights.reshape(9, groups, 4)[pair[0]]))  # [group, 2]
    return DEPTHWISE_GROUPS.pack(doubled_bias, np.concatenate(words, axis=1), scales)


def field_vector_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """FIELD_VECTORS of a convolution's weights [out_c, kh, kw, in_c]."""
    rows = weights.reshape(weights.shape[0], -1).astype(np.int8)
    rows = np.pad(rows, ((0, 0), (0, -rows.shape[1] % VECTOR_BYTES)))
    words = np.ascontiguousarray(rows).view("<i4")  # the bytes as the kernel's vector loads read them
    return FIELD_VECTORS.pack(folded_bias, words, scales)


def depthwise_sixteen_blocks(folded_bias: np.ndarray, weights: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """DEPTHWISE_SIXTEENS of a depthwise convolution's weights [1, kh, kw, channels] (channels a
    multiple of 16), `folded_bias` folded (not doubled)."""
    taps, channels = weights.shape[1] * weights.shape[2], weights.shape[3]
    blocks = channels // 16
    tap_words = np.ascontiguousarray(weights.reshape(taps, blocks, 16).astype(np.int8).transpose(1, 0, 2))
    in_lanes = (np.arange(blocks)[:, None] * 16 + SIXTEEN_LANES).reshape(-1)  # per block, its channels by lane
    lane_scales = scales.astype(np.int64)[in_lanes].reshape(blocks, 4, 4, 3) * np.array([1, 1, -1])
    return DEPTHWISE_SIXTEENS.pack(folded_bias.astype(np.int64)[in_lanes], tap_words.view("<i4").reshape(blocks, -1),
                                   lane_scales.transpose(0, 1, 3, 2).reshape(-1, 3))
