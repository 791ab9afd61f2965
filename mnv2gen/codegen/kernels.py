"""Which C kernel computes each stage: the variants, the stage kinds and the row kernels.

Lowering picks one `RowKernel` per convolution stage from what the layer is and what its
constants allow (`choose_row_kernel`); the generated C names it in the stage's params
(`.kernel = MNV2_KERNEL_...`) and in its comment, and the kernels' dispatch switches on that
field instead of deciding again from the params' shape. This table is the only place the
choice is written down: the templates render their enums and dispatch from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import ir
from . import blocks
from .blocks import CHANNEL_PAIRS, FIELD_VECTORS, NARROW_CHANNELS, VECTOR_BYTES, WORD_PAIRS, BlockLayout


class Variant(str, enum.Enum):
    """A set of kernels, templates/<variant>/. A str, so options given as text compare equal."""

    REF = "ref"  # portable C
    DSP = "dsp"  # Cortex-M4/M7: the DSP extension's SIMD
    MVE = "mve"  # Cortex-M55: Helium where it helps, the DSP kernels elsewhere

    @property
    def simd(self) -> bool:
        return self is not Variant.REF

    @property
    def helium(self) -> bool:
        """Its kernels have Helium forms (the templates' mve/ files)."""
        return self is Variant.MVE


class StageKind(enum.Enum):
    """A row-pipeline stage's kind (the C's {P}_STAGE_*, rendered from here): which row
    function the engine calls."""

    CONV = 0  # conv_row(params, input rows, output row)
    CONV_1X1 = 1  # conv_1x1_row(params, input row, output row)
    DEPTHWISE = 2  # depthwise_row(params, input rows, output row)
    ADD = 3  # add_s8 on one row of each input
    ORT_ADD = 4  # ort_add_s8 (QLinearAdd as ONNX Runtime computes it) on one row of each input
    ORT_QUANTIZE_NCHW = 5  # ort_quantize_row: row y of every plane of the float NCHW input
    ORT_UINT8_INPUT = 6  # ort_uint8_row: a uint8 input row as the IR's int8 (-128), --quantized-input
    TRANSPOSE = 7  # transpose_row_s8: row y of every plane of the int8 NCHW input (a .tflite's TRANSPOSE)

    @property
    def params_type(self) -> str:
        """Its params' struct, without the prefix."""
        return {StageKind.ADD: "add_params", StageKind.ORT_ADD: "ort_add_params",
                StageKind.ORT_QUANTIZE_NCHW: "ort_quantize_params",
                StageKind.ORT_UINT8_INPUT: "ort_uint8_params",
                StageKind.TRANSPOSE: "transpose_params"}.get(self, "conv_params")

    @property
    def arithmetic(self) -> ir.Arithmetic | None:
        """The only arithmetic with this kind of stage (None: both have it)."""
        if self in (StageKind.ADD, StageKind.TRANSPOSE):
            return ir.Arithmetic.TFLITE
        if self in (StageKind.ORT_ADD, StageKind.ORT_QUANTIZE_NCHW, StageKind.ORT_UINT8_INPUT):
            return ir.Arithmetic.ONNXRUNTIME
        return None

    @property
    def function(self) -> str:
        """An ADD kind's kernel, without the prefix (convolutions go through the row dispatch)."""
        return {StageKind.ADD: "add_s8", StageKind.ORT_ADD: "ort_add_s8"}[self]

    @property
    def params_note(self) -> str:
        """What its params hold besides what the struct says."""
        return {StageKind.CONV_1X1: "bias with the zero point folded", StageKind.ADD: "size = one row",
                StageKind.ORT_ADD: "size = one row",
                StageKind.ORT_QUANTIZE_NCHW: "input row = row of the first plane",
                StageKind.TRANSPOSE: "input row = row of the first plane"}.get(self, "")


class OutputStage(enum.Enum):
    """How a convolution row kernel turns an int32 accumulator into an output byte: TFLite's
    gemmlowp fixed point (multiplier, shift), ONNX Runtime's float32 requantization (a scale
    per channel, two roundings), or on cores without an FPU the same requantization in
    integers (the scale's mantissa and shift; mnv2gen/ort_integer.py proves it equal for
    every channel's accumulators). The row kernels are the same; only their `output_of`
    differs. A model follows one arithmetic, so its kernels.c holds one output stage, chosen
    here from the graph's arithmetic and the target and named in the C."""

    TFLITE_FIXED_POINT = "tflite_fixed_point"
    ORT_FLOAT32 = "ort_float32"
    ORT_INTEGER = "ort_integer"

    @classmethod
    def of(cls, arithmetic: ir.Arithmetic, fpu: bool = True) -> "OutputStage":
        if arithmetic is ir.Arithmetic.TFLITE:
            return cls.TFLITE_FIXED_POINT
        return cls.ORT_FLOAT32 if fpu else cls.ORT_INTEGER

    @property
    def arithmetic(self) -> ir.Arithmetic:
        return ir.Arithmetic.TFLITE if self is OutputStage.TFLITE_FIXED_POINT else ir.Arithmetic.ONNXRUNTIME

    @property
    def integer(self) -> bool:
        """Whether its C has no float arithmetic (its constants are integers)."""
        return self is not OutputStage.ORT_FLOAT32

    @property
    def in_float32(self) -> bool:
        """Whether it requantizes in float32 (the assembly loops render its form:
        templates/mve/lanes_asm.j2)."""
        return self is OutputStage.ORT_FLOAT32

    @property
    def add_kind(self) -> StageKind:
        """The stage kind of an ADD in a pipeline of this arithmetic."""
        return StageKind.ORT_ADD if self.arithmetic is ir.Arithmetic.ONNXRUNTIME else StageKind.ADD

    def stage_kinds(self, transposes: bool = False) -> list[StageKind]:
        """The stage kinds its C enumerates: the other arithmetic's are left out, TRANSPOSE
        unless the model has one (the C of every other .tflite stays as it was), and the float
        input's QuantizeLinear (a float division) where the stage is integer: it is refused there."""
        return [kind for kind in StageKind if kind.arithmetic in (None, self.arithmetic)
                and (kind is not StageKind.TRANSPOSE or transposes)
                and (kind is not StageKind.ORT_QUANTIZE_NCHW or self is not OutputStage.ORT_INTEGER)]


class OutputRounding(enum.Enum):
    """How a stage's fast output stage (conv_params.scales or blocks) rounds, chosen once in
    lowering and named in conv_params.rounding: gemmlowp's rounding division of a negative
    accumulator takes acc's sign (a -1 before the shift); where quant.unsigned_rounding
    proves the activation's clamp hides it, the kernels that have an unsigned instance
    (RenderedKernels.unsigned) leave that instruction out of every output."""

    SIGNED = 0
    UNSIGNED = 1


# The row kernels with an unsigned instance: the ones whose every output in MobileNetV2 has
# a fused ReLU6 (the depthwise layers, the narrow expansions).
UNSIGNED_KERNELS = ("DEPTHWISE_GROUPS", "POINTWISE_NARROW_8", "POINTWISE_NARROW_16")

SIMD = (Variant.DSP, Variant.MVE)


@dataclass(frozen=True)
class RowKernel:
    """A kernel computing the output rows of one kind of convolution stage. `function` is
    its C row function (static in kernels.c), `layout` the layout of conv_params.blocks it
    walks (None: it reads the plain weights, bias and per-channel arrays)."""

    name: str  # the C enum constant is {P}_KERNEL_<NAME>
    stage: StageKind
    function: str
    variants: tuple[Variant, ...]
    layout: BlockLayout | None = None
    # Without blocks, whether it reads the plain arrays' output stage from `scales` (rows of
    # SCALE_WORDS, in either arithmetic) rather than the portable stage's arrays.
    scale_rows: bool = False

    @property
    def enum_name(self) -> str:
        return f"KERNEL_{self.name}"

    @property
    def in_lanes(self) -> bool:
        """A Helium kernel: its output stage runs four lanes at once (templates/mve/lanes_asm.j2),
        every row of a layer in one arithmetic. ONNX models' rows are then all float rows,
        never quant_ort's per-channel fixed-point ones, which the scalar DSP stage tells apart."""
        return self.variants == (Variant.MVE,)


# 1x1 convolutions with these many input channels (MobileNetV2's narrow bottlenecks
# expanding) get doubled 16-bit weights: two pixels' inputs then fit in registers as SMLAD
# pairs. Each count has its own unrolled kernel, hence a short list; wider layers keep
# int8 weights: doubling them all would double the flash.
NARROW_POINTWISE_INPUTS = (8, 16)
# Other 1x1 convolutions with at most this many input channels take two pixels' inputs split
# into SMLAD pairs once, on the stack (four bytes per input channel), rather than once per
# pair of output channels: 192 keeps one inference's stack under 1,600 B; wider ones (the
# 336 of MobileNetV2 0.35's last blocks) split them in the loop.
MAX_STAGED_INPUTS = 192
# Those with at most this many take three pixels at a time (POINTWISE_TRIPLES: six bytes a
# channel on the stack, no more than POINTWISE_STAGED's 192 take), each weight word split once
# for three pixels; MobileNetV2's rows (48, 24, 12, 6, 3 pixels) are whole triples.
MAX_TRIPLE_INPUTS = 128
# Likewise other convolutions whose receptive field has at most this many bytes (the stem's
# 3x3x3): their patches are split into SMLAD pairs once, not once per output channel.
MAX_PACKED_PATCH = 64
# On Helium, those of at most two vectors (the stem's 27 bytes) take CONV_VECTORS.
MAX_VECTOR_FIELD = 2 * VECTOR_BYTES

ALL = tuple(Variant)
CONV_PIXELS = RowKernel("CONV_PIXELS", StageKind.CONV, "conv_pixels", ALL)
CONV_PACKED = RowKernel("CONV_PACKED", StageKind.CONV, "conv_packed_row", SIMD, CHANNEL_PAIRS)
# Helium's: the field gathered into two vectors per pixel, two VMLADAVs per output.
CONV_VECTORS = RowKernel("CONV_VECTORS", StageKind.CONV, "conv_vectors_row", (Variant.MVE,), FIELD_VECTORS)
POINTWISE_PIXELS = RowKernel("POINTWISE_PIXELS", StageKind.CONV_1X1, "pointwise_pixels", ALL)
POINTWISE_NARROW = {n: RowKernel(f"POINTWISE_NARROW_{n}", StageKind.CONV_1X1, f"pointwise_narrow_{n}_row",
                                 (Variant.DSP,), NARROW_CHANNELS)
                    for n in NARROW_POINTWISE_INPUTS}
POINTWISE_PAIRS = RowKernel("POINTWISE_PAIRS", StageKind.CONV_1X1, "pointwise_pairs_row", (Variant.DSP,),
                            WORD_PAIRS)
POINTWISE_STAGED = RowKernel("POINTWISE_STAGED", StageKind.CONV_1X1, "pointwise_staged_row", (Variant.DSP,),
                             WORD_PAIRS)
POINTWISE_TRIPLES = RowKernel("POINTWISE_TRIPLES", StageKind.CONV_1X1, "pointwise_triples_row", (Variant.DSP,),
                              WORD_PAIRS)
# Helium's 1x1 of every width: four pixels per weight vector, plain int8 weights and `scales`.
POINTWISE_VECTORS = RowKernel("POINTWISE_VECTORS", StageKind.CONV_1X1, "pointwise_vectors_row", (Variant.MVE,),
                              scale_rows=True)
DEPTHWISE_TAPS = RowKernel("DEPTHWISE_TAPS", StageKind.DEPTHWISE, "depthwise_taps_row", ALL)
DEPTHWISE_GROUPS = RowKernel("DEPTHWISE_GROUPS", StageKind.DEPTHWISE, "depthwise_groups_row", SIMD,
                             blocks.DEPTHWISE_GROUPS)
# Helium's 3x3 depthwise (MobileNet's every one): the same blocks, a group of four channels an
# int32 vector; other windows keep DEPTHWISE_GROUPS.
DEPTHWISE_VECTORS = RowKernel("DEPTHWISE_VECTORS", StageKind.DEPTHWISE, "depthwise_vectors_row", (Variant.MVE,),
                              blocks.DEPTHWISE_GROUPS)

# Helium's 3x3 depthwise on sixteen channels a vector of int8 lanes, two taps' products summed
# in int16: for channels in sixteens and weights above -128 (see depthwise_sixteens.c.j2).
DEPTHWISE_SIXTEENS = RowKernel("DEPTHWISE_SIXTEENS", StageKind.DEPTHWISE, "depthwise_sixteens_row", (Variant.MVE,),
                               blocks.DEPTHWISE_SIXTEENS)

ROW_KERNELS = (CONV_PIXELS, CONV_PACKED, CONV_VECTORS, POINTWISE_PIXELS, *POINTWISE_NARROW.values(), POINTWISE_STAGED,
               POINTWISE_PAIRS, POINTWISE_TRIPLES,
               POINTWISE_VECTORS,
               DEPTHWISE_TAPS, DEPTHWISE_GROUPS, DEPTHWISE_VECTORS, DEPTHWISE_SIXTEENS)


class FullyConnectedKernel(enum.Enum):
    """How fully_connected_s8 walks a layer (named in the generated C's comment for it).
    STAGED: the DSP kernels, depth a multiple of four: the weights regrouped four units at a
    time (blocks.interleaved_quads) and each input row split into SMLAD pairs once, into an
    arena scratch the planner places and proves (`staged_input_words`), so a weight word costs
    its two SXTB16 and two SMLADs and an input word one LDRD per four units. PORTABLE: the
    rest, four units at a time through dot_quad, then one at a time."""

    PORTABLE = "FULLY_CONNECTED_PORTABLE"
    STAGED = "FULLY_CONNECTED_STAGED"


def choose_fully_connected_kernel(op: ir.FullyConnected, variant: Variant) -> FullyConnectedKernel:
    if variant is Variant.DSP and op.weights.shape[1] % 4 == 0:
        return FullyConnectedKernel.STAGED
    return FullyConnectedKernel.PORTABLE


def staged_input_words(op: ir.Op, variant: Variant) -> int:
    """Words of arena scratch the op's kernel needs while it runs (0: none): STAGED's one
    input row as SMLAD pairs, two words per word of input."""
    if isinstance(op, ir.FullyConnected) and choose_fully_connected_kernel(op, variant) is FullyConnectedKernel.STAGED:
        return op.weights.shape[1] // 2
    return 0


def row_kernels(variant: Variant) -> list[RowKernel]:
    """The row kernels of a variant, in the order of their C enum."""
    return [k for k in ROW_KERNELS if variant in k.variants]


def stage_kind(op: ir.Conv2D | ir.DepthwiseConv2D) -> StageKind:
    if isinstance(op, ir.DepthwiseConv2D):
        return StageKind.DEPTHWISE
    pointwise = op.kernel == (1, 1) and op.padding == ir.Padding()
    return StageKind.CONV_1X1 if pointwise else StageKind.CONV


def pairs_taps(kernel: RowKernel, op: ir.Conv2D | ir.DepthwiseConv2D) -> bool:
    """Whether the kernel's blocks hold the taps in pairs (blocks.PAIRED_3X3_TAPS):
    DEPTHWISE_GROUPS' 3x3 window sums two taps a channel with one SMLAD. Its other windows,
    and Helium's kernels on the same layout, read a tap at a time."""
    return kernel is DEPTHWISE_GROUPS and tuple(op.kernel) == (3, 3)


def choose_row_kernel(op: ir.Conv2D | ir.DepthwiseConv2D, variant: Variant, fast_output_stage: bool) -> RowKernel:
    """The kernel for a convolution stage. The SIMD kernels with blocks need the fast output
    stage (their block ends in the channel's `scales`) and channels in whole words where
    they read them a word at a time; everything else takes the portable row kernel of its
    kind (with the variant's inner loops)."""
    kind = stage_kind(op)
    in_c, out_c = op.input.shape[-1], op.output.shape[-1]
    simd = variant.simd and fast_output_stage
    if kind is StageKind.DEPTHWISE:
        if not (simd and out_c % 4 == 0):
            return DEPTHWISE_TAPS
        if variant not in DEPTHWISE_VECTORS.variants or op.kernel != (3, 3):
            return DEPTHWISE_GROUPS
        sixteens = out_c % 16 == 0 and int(op.weights.data.min()) > -128
        return DEPTHWISE_SIXTEENS if sixteens else DEPTHWISE_VECTORS
    if kind is StageKind.CONV_1X1:
        if simd and variant in POINTWISE_VECTORS.variants:
            return POINTWISE_VECTORS
        if simd and in_c in POINTWISE_NARROW and variant in POINTWISE_NARROW[in_c].variants:
            return POINTWISE_NARROW[in_c]
        if simd and in_c % 4 == 0 and in_c <= MAX_TRIPLE_INPUTS and variant in POINTWISE_TRIPLES.variants:
            return POINTWISE_TRIPLES
        if simd and in_c % 4 == 0 and in_c <= MAX_STAGED_INPUTS and variant in POINTWISE_STAGED.variants:
            return POINTWISE_STAGED
        if simd and in_c % 4 == 0 and variant in POINTWISE_PAIRS.variants:
            return POINTWISE_PAIRS
        return POINTWISE_PIXELS
    patch_bytes = op.kernel[0] * op.kernel[1] * in_c
    if simd and variant in CONV_VECTORS.variants and patch_bytes <= MAX_VECTOR_FIELD:
        return CONV_VECTORS
    return CONV_PACKED if simd and patch_bytes <= MAX_PACKED_PATCH else CONV_PIXELS
