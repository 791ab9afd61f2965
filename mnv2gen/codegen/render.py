"""Render the C sources from the lowered layers: pure and deterministic.

`render()` returns {file name: text}; the CLI writes them. Nothing here reads the clock or
the environment, so the same model and options always give byte-identical files. Nothing
from the model's strings reaches the C except through `comment_text()`, and symbols are
built from layer numbers only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__, ir
from ..passes import OptimizeLevel
from ..plan.arena import ArenaPlan
from ..plan.rows import row_bytes, tensor_rows
from ..plan.streaming import InputMode
from ..preprocess import WEIGHT_BITS, YUV_COEFFICIENTS, Normalize, PixelFormat, Preprocess, Resize, Scale
from ..targets import C_FLOAT_FLAGS, TARGETS, core_flag, cpu_flags, has_fpu
from .blocks import LAYOUTS, SCALE_WORDS
from .kernels import (DEPTHWISE_GROUPS, MAX_PACKED_PATCH, MAX_VECTOR_FIELD, NARROW_POINTWISE_INPUTS,
                      POINTWISE_NARROW, POINTWISE_STAGED, POINTWISE_TRIPLES, ROW_KERNELS, UNSIGNED_KERNELS, OutputRounding, OutputStage, RowKernel,
                      StageKind, Variant, row_kernels)
from .lower import Layer, lower
from .values import ArenaAddress, ArrayRef, DeclRef, Double, Float32

# Kernel variants (templates/<variant>/): portable C, or the DSP extension's SIMD.
# The Cortex-M0+ (Armv6-M) has neither: the portable C.
KERNEL_VARIANTS = {"host": Variant.REF, "cortex-m0plus": Variant.REF, "cortex-m4": Variant.DSP,
                   "cortex-m7": Variant.DSP, "cortex-m33": Variant.DSP, "cortex-m55": Variant.MVE,
                   "cortex-m85": Variant.MVE}
# The variants each core can run (the Cortex-M55 and M85 have the DSP extension besides
# Helium), for benchmarks that compare them on one core.
CORE_VARIANTS = {"host": (Variant.REF,), "cortex-m0plus": (Variant.REF,), "cortex-m4": (Variant.REF, Variant.DSP),
                 "cortex-m7": (Variant.REF, Variant.DSP), "cortex-m33": (Variant.REF, Variant.DSP),
                 "cortex-m55": tuple(Variant), "cortex-m85": tuple(Variant)}
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# Values a line of a wider (int32_t) array.
VALUES_PER_LINE = 8
# Bytes a line of a byte array's string literal (four characters each).
BYTES_PER_LINE = 24
# The largest receptive field, in bytes, the kernels gather into a patch on the stack.
CONV_PATCH_LIMIT = 512
# Whose arithmetic the C equals where TFLite and TFLite Micro differ (the command line's names).
REFERENCES = tuple(ir.Reference)
# A linker section name the C can carry in __attribute__((section("..."))) as it is: no quote,
# backslash or space can reach the C, and the length stays under every toolchain's limits.
SECTION_PATTERN = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]{0,62}$")
# The alignment of the arena's start: that of the double in the static arena's union, enough
# for float I/O and for the SIMD kernels' word loads.
ARENA_ALIGN = 8


class ArenaMode(StrEnum):
    """Who owns the arena: the generated C (one static array), or the caller, who hands a
    buffer to <p>_set_arena() before use (so several models can share one)."""
    STATIC = "static"
    EXTERNAL = "external"


def _section_problem(name: str) -> str:
    return (f"{name!r} is not a valid section name: use up to 63 letters, digits, underscores and dots, "
            "not starting with a digit (e.g. .ccmram)")


def check_section(name: str) -> str:
    if not SECTION_PATTERN.match(name):
        raise ValueError(_section_problem(name))
    return name


@dataclass
class Options:
    prefix: str = "mnv2"
    target: str = "host"  # one of targets.TARGETS (checked)
    reference: ir.Reference = ir.Reference.TFLITE  # whose rounding to follow where TFLite and TFLite Micro differ
    optimize: OptimizeLevel = OptimizeLevel.MEMORY  # see passes.run_passes; a name is accepted
    memory_budget: int | None = None  # fail the compile if the arena would be larger
    kernels: Variant | None = None  # a variant of CORE_VARIANTS[target] instead of the target's own
    # kernels.c holds every row kernel of the variant, not only those the model's stages run
    # (the tests that compile all of them; a model's own C never needs the others)
    every_kernel: bool = False
    weights_section: str | None = None  # the linker section of the weight arrays (default: .rodata)
    arena_section: str | None = None  # the linker section of the static arena (default: .bss)
    arena: ArenaMode = ArenaMode.STATIC  # a name is accepted
    quantized_input: bool = False  # ONNX: the C's input is the first QuantizeLinear's output
    input: InputMode = InputMode.FRAME  # rows: <p>_run_rows() pulls the input (plan/streaming.py)
    input_format: PixelFormat | None = None  # with rows: fill writes these pixels (preprocess.py)
    normalize: Normalize | None = None  # with input_format: the float normalization (default: x)
    input_scale_from: Scale | None = None  # with input_format: fill delivers a sensor frame of this size
    input_resize: Resize | None = None  # with input_scale_from given as text: how (default: bilinear)

    def __post_init__(self) -> None:
        # A misspelt target or level would otherwise compile as the default, silently.
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        if self.reference not in REFERENCES:
            raise ValueError(f"unknown reference {self.reference!r}; known: {', '.join(REFERENCES)}")
        self.reference = ir.Reference(self.reference)
        if self.kernels is not None:
            if self.kernels not in tuple(Variant):
                raise ValueError(f"unknown kernels {self.kernels!r}; known: {', '.join(Variant)}")
            self.kernels = Variant(self.kernels)
        self.optimize = OptimizeLevel(self.optimize)
        self.arena = ArenaMode(self.arena)
        self.input = InputMode(self.input)
        if self.input_format is not None:
            self.input_format = PixelFormat(self.input_format)
            if self.input is not InputMode.ROWS:
                raise ValueError("--input-format converts streamed rows: add --input rows")
        if isinstance(self.normalize, str):
            self.normalize = Normalize.parse(self.normalize)
        if self.normalize is not None and self.input_format is None:
            raise ValueError("--normalize applies to sensor pixels: add --input-format (and --input rows)")
        if self.input_resize is not None:
            self.input_resize = Resize(self.input_resize)
            if self.input_scale_from is None:
                raise ValueError("--input-resize says how --input-scale-from resizes: add --input-scale-from")
        if isinstance(self.input_scale_from, str):
            self.input_scale_from = Scale.parse(self.input_scale_from, self.input_resize or Resize.BILINEAR)
        if self.input_scale_from is not None and self.input_format is None:
            raise ValueError("--input-scale-from resizes sensor pixels: add --input-format (and --input rows)")
        # The section names reach the C as they are: only names that cannot inject text pass.
        for flag, section in (("--weights-section", self.weights_section), ("--arena-section", self.arena_section)):
            if section is not None and not SECTION_PATTERN.match(section):
                raise ValueError(f"{flag}: {_section_problem(section)}")
        if self.arena_section is not None and self.arena is ArenaMode.EXTERNAL:
            raise ValueError("--arena-section places the static arena; with --arena external there is "
                             "none: place the buffer you pass to set_arena() yourself")


def preprocess_of(options: Options) -> Preprocess | None:
    """The fused preprocessing the options ask for, or None (fill writes the model's input)."""
    if options.input_format is None:
        return None
    return Preprocess(options.input_format, options.normalize or Normalize(), options.input_scale_from)


def comment_text(text: str, limit: int = 80) -> str:
    """Make untrusted text safe inside a C block comment, and keep it readable: characters
    that are not printable ASCII (newlines, escapes, non-ASCII) become '?', a backslash
    becomes '/' (no line splice), `*/` and `/*` get a space (the comment cannot close early,
    nor nest under -Wcomment), and a space separates question marks (no trigraph, which C99
    replaces before comments are seen: `??/` is a backslash). Bounded in length."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text).replace("\\", "/")
    safe = safe[:limit] + ("..." if len(safe) > limit else "")
    while "*/" in safe or "/*" in safe:
        safe = safe.replace("*/", "* /").replace("/*", "/ *")
    while "??" in safe:
        safe = safe.replace("??", "? ?")
    return safe


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _c_int(value: int) -> str:
    # -2147483648 is not an int literal in C (it negates a too-large positive one).
    return "(-2147483647 - 1)" if value == -(2**31) else str(value)


def _file_static(name: str, prefix: str) -> str:
    """model.c's static constants (each layer's parameters and tables) carry the prefix like
    every other symbol, so two models' C can share one translation unit."""
    return f"{prefix}_{name}"


def c_value(value, prefix: str) -> str:
    """How C spells a lowered value (see values.py) in the code of `prefix`."""
    if value is None:
        return "NULL"
    if isinstance(value, ArrayRef):
        return f"{prefix}_{value.symbol}"
    if isinstance(value, DeclRef):
        return ("&" if value.address else "") + _file_static(value.name, prefix)
    if isinstance(value, ArenaAddress):
        return f"ARENA({'const ' if value.const else ''}{value.ctype}, {value.offset})"
    if isinstance(value, RowKernel):
        return f"{prefix.upper()}_{value.enum_name}"
    if isinstance(value, StageKind):
        return f"{prefix.upper()}_STAGE_{value.name}"
    if isinstance(value, OutputRounding):
        return f"{prefix.upper()}_ROUNDING_{value.name}"
    if isinstance(value, Float32):
        return f"{float(np.float32(value.value))!r}f"  # exact: the float32 value itself
    if isinstance(value, Double):
        return repr(float(value.value))
    return _c_int(int(value))


@jinja2.pass_context
def _c_filter(context, value) -> str:
    return c_value(value, context["p"])


def _c_initializer(array) -> str:
    """The values of a weights array, as the body of its initializer. Byte arrays are one string
    literal of exactly their length (no terminating NUL; C allows it): compilers read a
    megabyte of escapes in a tenth of the time a list of numbers takes, and every build and
    every test pays that time. Wider arrays are lists of numbers."""
    if array.values.dtype.itemsize == 1:
        return _byte_string(array.values.tobytes())
    values = array.values.tolist()
    if array.ctype == "int32_t" and min(values, default=0) == -(2**31):
        values = [_c_int(v) for v in values]
    per_line = VALUES_PER_LINE
    return "\n".join(
        "    " + ", ".join(map(str, values[i:i + per_line])) + ","
        for i in range(0, len(values), per_line)
    )


def _byte_string(data: bytes) -> str:
    """`data` as string-literal lines of hex escapes, BYTES_PER_LINE a line."""
    return "\n".join(
        '    "' + "".join(f"\\x{byte:02x}" for byte in data[i:i + BYTES_PER_LINE]) + '"'
        for i in range(0, len(data), BYTES_PER_LINE)
    )


@functools.cache
def _environment() -> jinja2.Environment:
    """One per process: it keeps the templates it has compiled (and recompiles one whose file
    changed), which every compile after the first would otherwise pay for again."""
    folder = importlib.resources.files("mnv2gen.templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,
    )
    env.filters["c_initializer"] = _c_initializer
    env.filters["c"] = _c_filter
    return env


def _banner(graph: ir.Graph, options: Options) -> str:
    """What determines the files, and nothing else (not the command line, the folder or the
    time): the same model and options give byte-identical files wherever they are compiled."""
    return (
        f"/* Generated by mnv2gen {__version__}; do not edit.\n"
        f" * Model: {comment_text(Path(graph.source).name, 60)} (sha256 {graph.source_sha256[:16]}...)\n"
        f" * Options: {' '.join(_option_flags(options))} */"
    )


def _option_flags(options: Options) -> list[str]:
    """The flags that change the C, as they would be given to `mnv2gen compile`."""
    flags = [f"--prefix {options.prefix}", f"--target {options.target}", f"--reference {options.reference}",
             f"--optimize {options.optimize}"]
    flags += [f"--weights-section {options.weights_section}"] if options.weights_section else []
    flags += [f"--arena-section {options.arena_section}"] if options.arena_section else []
    flags += [f"--arena {options.arena}"] if options.arena is not ArenaMode.STATIC else []
    flags += ["--quantized-input"] if options.quantized_input else []
    flags += [f"--input {options.input}"] if options.input is not InputMode.FRAME else []
    flags += [f"--input-format {options.input_format}"] if options.input_format else []
    # The normalization as numbers (never the text given): nothing from a command line reaches the C.
    flags += [f"--normalize {options.normalize.canonical()}"] if options.normalize else []
    scale = options.input_scale_from
    flags += [f"--input-scale-from {scale.width}x{scale.height} --input-resize {scale.resize}"] if scale else []
    flags += [f"(kernels: {options.kernels})"] if options.kernels else []
    return flags + (["(every kernel)"] if options.every_kernel else [])


# Every file render() writes, by template; `{p}` is the prefix. The C sources and headers...
C_FILES = {"{p}_model.h": "model.h.j2", "{p}_model.c": "model.c.j2", "{p}_weights.h": "weights.h.j2",
           "{p}_weights.c": "weights.c.j2", "{p}_kernels.h": "ref/kernels.h.j2"}  # + {p}_kernels.c
KERNELS_C = "{p}_kernels.c"
# ...and what a user's build needs besides the C: fragments listing the sources and flags,
# and a README of the API. They list the sources of the C files, so they cannot drift.
BUILD_FILES = {"{p}_model.cmake": "build.cmake.j2", "{p}_model.mk": "build.mk.j2",
               "{p}_README.md": "api_readme.md.j2"}


def output_names(prefix: str) -> list[str]:
    """The names of the files `render` returns for `prefix` (known before compiling)."""
    return sorted(name.format(p=prefix) for name in [*C_FILES, KERNELS_C, *BUILD_FILES])


# What each kernel variant needs of the compiler, checked by the preprocessor so a wrong
# build (Cortex-M4 C for a Cortex-M3) stops at a clear #error, not an implicit declaration.
# The predefined macro of the instructions each kernel variant uses: C generated for them and
# compiled for a core without them stops at an #error that says so (templates/target_guard.j2).
VARIANT_FEATURES = {Variant.DSP: "__ARM_FEATURE_DSP", Variant.MVE: "__ARM_FEATURE_MVE"}


def _endpoint(t: ir.Tensor, plan: ArenaPlan) -> dict:
    """The model's input or output as model.h describes it; `region_bytes` are its bytes in
    the arena (a streamed input's ring, else the whole tensor)."""
    quant = ""
    if t.quant is not None:
        quant = f", scale {t.scale!r}, zero point {t.zero_point}"
    return dict(shape_text=_shape_text(t.shape), ctype=t.ctype, nbytes=t.nbytes, offset=plan.offset(t),
                region_bytes=plan.lifetimes.of(t).nbytes, quant_text=quant,
                scale=repr(t.scale) if t.quant is not None else None,
                zero_point=t.zero_point if t.quant is not None else None)


# How model.c's pixel converter reads the R, G and B bytes of pixel i (preprocess.py's
# bytes_of_channels in C); gray8 reads its one byte for every channel, and yuv422 decodes
# pixel pairs (model.c.j2's each_pixel, from preprocess.YUV_COEFFICIENTS).
_PIXEL_DECODE = {
    PixelFormat.RGB888: ["const uint32_t r = pixels[3 * i], g = pixels[3 * i + 1], b = pixels[3 * i + 2];"],
    PixelFormat.BGR888: ["const uint32_t b = pixels[3 * i], g = pixels[3 * i + 1], r = pixels[3 * i + 2];"],
    PixelFormat.RGB565: ["/* R5 G6 B5, little-endian; each field widened to 8 bits by repeating its top bits. */",
                         "const uint32_t word = (uint32_t)pixels[2 * i] | (uint32_t)pixels[2 * i + 1] << 8;",
                         "const uint32_t r5 = word >> 11, g6 = (word >> 5) & 63u, b5 = word & 31u;",
                         "const uint32_t r = r5 << 3 | r5 >> 2, g = g6 << 2 | g6 >> 4, b = b5 << 3 | b5 >> 2;"],
    PixelFormat.GRAY8: None,
    PixelFormat.YUV422: None,
}


def _transposes(plan: ArenaPlan) -> bool:
    """Whether a pipeline stage transposes a .tflite's NCHW input (StageKind.TRANSPOSE)."""
    return any(isinstance(stage, ir.Quantize) and stage.from_nchw and stage.arithmetic is ir.Arithmetic.TFLITE
               for op in plan.steps if isinstance(op, ir.RowPipeline) for stage in op.stages)


def _streamed_input(plan: ArenaPlan, preprocess: Preprocess | None) -> dict | None:
    """model.h's figures of a streamed input (--input rows), or None for a frame; with
    `preprocess`, fill writes pixels (uint8, the format's channels) that model.c converts
    in place with one table per model channel; with its scale, fill writes sensor rows into
    a ring of their own (the figures are then the sensor's) that model.c resizes from."""
    if plan.stream is None:
        return None
    t = plan.stream.tensor
    filled = plan.stream.sensor.tensor if plan.stream.sensor is not None else t
    fills = [e.writes for e in plan.events if e.writes[0] is filled and not e.reads]
    view = dict(rows=tensor_rows(filled), row_bytes=row_bytes(t), ring_rows=plan.lifetimes.of(filled).rows,
                ctype=t.ctype, max_fill_rows=max(last - first + 1 for _, first, last in fills), pixels=None)
    if preprocess is not None:
        _, height, width, channels = t.shape
        _, sensor_width = preprocess.sensor_shape(t)
        view.update(row_bytes=sensor_width * preprocess.format.channels, ctype="uint8_t", pixels=dict(
            format=str(preprocess.format), format_channels=preprocess.format.channels, width=width, height=height,
            decode=_PIXEL_DECODE[preprocess.format], yuv=preprocess.format is PixelFormat.YUV422,
            gray=preprocess.format is PixelFormat.GRAY8, yuv_coefficients=YUV_COEFFICIENTS,
            channels=channels, tables=preprocess.tables(t).tolist(), normalize=preprocess.normalize.canonical(),
            scale=repr(t.scale), zero_point=t.zero_point, sensor=_sensor_view(plan, preprocess, t)))
    return view


def _sensor_view(plan: ArenaPlan, preprocess: Preprocess, t: ir.Tensor) -> dict | None:
    """What model.c needs to resize sensor rows (--input-scale-from) into the input's rows:
    the sensor ring, and per input row and column its source pixels and weight
    (preprocess.Scale.axis, the definition)."""
    scale = preprocess.scale
    if scale is None:
        return None
    ring = plan.lifetimes.of(plan.stream.sensor.tensor)
    decoded = preprocess.format.decoded_channels
    rows, columns = scale.axis(scale.height, t.shape[1]), scale.axis(scale.width, t.shape[2])
    return dict(width=scale.width, height=scale.height, resize=str(scale.resize), offset=plan.offsets[id(ring)],
                slots=ring.rows, slot_bytes=row_bytes(ring.tensors[0]), decoded_channels=decoded,
                decodes=preprocess.format not in (PixelFormat.RGB888, PixelFormat.GRAY8),
                rows=list(zip(rows.first, rows.second, rows.weight)),
                columns=[(a * decoded, b * decoded, w) for a, b, w in zip(columns.first, columns.second, columns.weight)],
                weight_one=1 << WEIGHT_BITS, weight_bits=WEIGHT_BITS)


class _ArenaBindings:
    """With --arena external the arena's address is known only at run time, so a constant
    table cannot hold an address in it: such a table becomes a plain static whose initializer
    holds NULL there, and <p>_set_arena() writes each address (`assignments`)."""

    def __init__(self, external: bool):
        self.external = external
        self.assignments: list[tuple[str, ArenaAddress]] = []

    def fields(self, fields: dict, lvalue: str) -> list[tuple[str, object]]:
        """`fields` as (name, value) pairs, an arena address as None when it is bound later."""
        if not self.external:
            return list(fields.items())
        bound = [(f"{lvalue}.{name}", value) for name, value in fields.items() if isinstance(value, ArenaAddress)]
        self.assignments += bound
        return [(name, None if isinstance(value, ArenaAddress) else value) for name, value in fields.items()]

    def qualifier(self, count_before: int) -> str:
        """`const `, unless addresses were bound since `count_before` (a plain static then)."""
        return "const " if len(self.assignments) == count_before else ""


def _decl_view(decl, prefix: str, bindings: _ArenaBindings) -> dict:
    name, before = _file_static(decl.name, prefix), len(bindings.assignments)
    if isinstance(decl.fields, list):
        fields = [bindings.fields(row, f"{name}[{i}]") for i, row in enumerate(decl.fields)]
    else:
        fields = bindings.fields(decl.fields, name)
    return dict(ctype=decl.ctype, name=name, table=isinstance(decl.fields, list), fields=fields,
                comment=comment_text(decl.comment, 160), qualifier=bindings.qualifier(before))


def _layer_view(layer: Layer, prefix: str, bindings: _ArenaBindings) -> dict:
    """What the model template needs of one layer: comment, struct fields and the call's
    arguments, as values for its `c` filter."""
    op = layer.op
    details = [f"MACs: {op.macs():,}" if op.macs() else "MACs: 0"]
    details.append("arena: " + ", ".join(
        [f"in @{o.offset} ({o.nbytes} B)" for o in layer.inputs]
        + [f"out @{layer.output.offset} ({layer.output.nbytes} B)"]
        + ([f"scratch @{layer.scratch.offset} ({layer.scratch.nbytes} B)"] if layer.scratch else [])))
    if hasattr(op, "activation") and op.activation is not ir.Activation.NONE:
        details.append(f"fused activation: {op.activation.name}")
    if layer.kernel_choice:
        details.append(f"kernel: {layer.kernel_choice}")
    decls = [_decl_view(d, prefix, bindings) for d in layer.decls]
    before = len(bindings.assignments)
    fields = bindings.fields(layer.params, _file_static(layer.name, prefix))
    args = [DeclRef(layer.name, address=True)] if layer.params_type else list(layer.scalar_args)
    if layer.takes_operands:
        args += [ArenaAddress(o.offset, o.ctype, const=True) for o in layer.inputs]
        args.append(ArenaAddress(layer.output.offset, layer.output.ctype))
    return dict(
        number=layer.number, name=_file_static(layer.name, prefix), summary=comment_text(op.describe(), 120),
        details=details, params_type=layer.params_type, fields=fields, decls=decls,
        params_qualifier=bindings.qualifier(before),
        kernel=layer.kernel, args=args,
        output=layer.output, rings=layer.rings, output_address=ArenaAddress(layer.output.offset, layer.output.ctype, const=True),
    )


def kernel_variant(options: Options) -> Variant:
    """The kernels the C is made of: the target's own, or Options.kernels. Every variant
    serves both arithmetics (the Helium loops render the model's output stage)."""
    variant = Variant(options.kernels) if options.kernels else KERNEL_VARIANTS[options.target]
    if variant not in CORE_VARIANTS[options.target]:
        raise ValueError(f"{options.target} cannot run the {variant.value} kernels")
    return variant


def _conv_fields(layers: list) -> list[dict]:
    """The params of every lowered layer and pipeline stage, as {field: value}."""
    return [fields for layer in layers
            for fields in [layer.params, *(d.fields for d in layer.decls if isinstance(d.fields, dict))]]


def _staged_words(layers: list) -> int:
    """The words of split inputs the staged 1x1 kernels keep on the stack: per word of input,
    four of POINTWISE_STAGED's two pixels, six of POINTWISE_TRIPLES' three (4 if none)."""
    words_per_input_word = {POINTWISE_STAGED: 4, POINTWISE_TRIPLES: 6}
    return max([f["in_c"] // 4 * words_per_input_word[f["kernel"]] for f in _conv_fields(layers)
                if f.get("kernel") in words_per_input_word], default=4)


@dataclass(frozen=True)
class ZeroRows:
    """DEPTHWISE_GROUPS' rows of the input zero points in flash, one per distinct zero point of
    its layers, as wide as their widest input row (in_w * in_c): they stand for padded rows."""
    zero_points: tuple[int, ...]
    nbytes: int

    @classmethod
    def of(cls, layers: list) -> ZeroRows:
        """The model's (one row of zero point 0 if no layer takes DEPTHWISE_GROUPS: the kernel
        is rendered for builds of every kernel all the same)."""
        fields = [f for f in _conv_fields(layers) if f.get("kernel") is DEPTHWISE_GROUPS]
        return cls(tuple(sorted({-f["input_offset"] for f in fields})) or (0,),
                   max([f["in_w"] * f["in_c"] for f in fields], default=4))

    def initializers(self) -> list[str]:
        """Each row's bytes as lines of numbers (kernels.c has no string-literal arrays)."""
        per_line = 16
        return ["\n".join("        " + ", ".join([str(z)] * min(per_line, self.nbytes - i)) + ","
                          for i in range(0, self.nbytes, per_line)) for z in self.zero_points]


@dataclass(frozen=True)
class RenderedKernels:
    """The row kernels kernels.c holds, and of DEPTHWISE_GROUPS which windows: those lowering
    chose for the model's stages (or every one, Options.every_kernel). The rest would cost
    flash for nothing: the row dispatch would reference them, so the linker keeps them."""

    kernels: tuple[RowKernel, ...]  # in the order of the variant's enum
    depthwise_3x3: bool  # DEPTHWISE_GROUPS on 3x3 windows (its unrolled instance)
    depthwise_any: bool  # DEPTHWISE_GROUPS on any other window (the taps loop)
    # Of UNSIGNED_KERNELS, by name, the roundings of their stages (conv_params.rounding).
    roundings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, layers: list, variant: Variant, every_kernel: bool) -> "RenderedKernels":
        if every_kernel:
            return cls(tuple(row_kernels(variant)), True, True, {name: set(OutputRounding) for name in UNSIGNED_KERNELS})
        fields = [f for f in _conv_fields(layers) if isinstance(f.get("kernel"), RowKernel)]
        chosen = {f["kernel"] for f in fields}
        windows = {(f["kernel_h"], f["kernel_w"]) == (3, 3) for f in fields if f["kernel"] is DEPTHWISE_GROUPS}
        roundings = {name: {f["rounding"] for f in fields if f["kernel"].name == name} for name in UNSIGNED_KERNELS}
        return cls(tuple(k for k in row_kernels(variant) if k in chosen), True in windows, False in windows, roundings)

    def unsigned(self) -> dict[str, int | None]:
        """{kernel name: the constant its instance sets output_stage.unsigned_rounding to}:
        1 or 0 where the model's stages of that kernel all have one rounding, else None (the
        instance reads conv_params.rounding, an output at a time)."""
        def constant(used: set) -> int | None:
            return int(next(iter(used)) is OutputRounding.UNSIGNED) if len(used) == 1 else None
        return {name: constant(self.roundings.get(name) or {OutputRounding.SIGNED}) for name in UNSIGNED_KERNELS}

    def kinds(self) -> list[str]:
        """The stage kinds (names) whose row function kernels.c defines."""
        return list(dict.fromkeys(k.stage.name for k in self.kernels))

    def used(self) -> dict[str, bool]:
        """{kernel name: whether kernels.c holds it}, for every kernel of every variant."""
        return {k.name: k in self.kernels for k in ROW_KERNELS}


def render(graph: ir.Graph, plan: ArenaPlan, options: Options) -> dict[str, str]:
    if not PREFIX_PATTERN.match(options.prefix):
        raise ValueError(f"invalid prefix {options.prefix!r}")
    p, P = options.prefix, options.prefix.upper()
    variant = kernel_variant(options)
    fpu = has_fpu(options.target)
    layers = lower(plan, options.reference, variant, fpu)
    arrays = [a for layer in layers for a in layer.arrays]
    kernels = [s.kernel for op in plan.steps if isinstance(op, ir.RowPipeline)
               for s in op.stages if isinstance(s, (ir.Conv2D, ir.DepthwiseConv2D))]
    output_stage = OutputStage.of(graph.arithmetic, fpu)
    rendered_kernels = RenderedKernels.of(layers, variant, options.every_kernel)
    env = _environment()
    bindings = _ArenaBindings(options.arena is ArenaMode.EXTERNAL)
    context = dict(
        p=p, P=P, banner=_banner(graph, options), target=options.target, required_feature=VARIANT_FEATURES.get(variant),
        core_flag=core_flag(options.target) if options.target != "host" else None,
        arena_bytes=plan.arena_bytes, external_arena=options.arena is ArenaMode.EXTERNAL,
        arena_align=ARENA_ALIGN, arena_data_bytes=-(-plan.arena_bytes // ARENA_ALIGN) * ARENA_ALIGN,
        weights_section=options.weights_section, arena_section=options.arena_section,
        input=_endpoint(graph.input, plan), output=_endpoint(graph.output, plan),
        streamed_input=_streamed_input(plan, preprocess_of(options)),
        layers=[_layer_view(layer, p, bindings) for layer in layers], arena_bindings=bindings.assignments,
        arrays=arrays, total_bytes=sum(a.nbytes for a in arrays),
        max_kernel_rows=max([k[0] for k in kernels], default=1),
        max_kernel_taps=max([k[0] * k[1] for k in kernels], default=1),
        # Rounded up to whole words: the SIMD kernels load the patch a word at a time. Larger
        # receptive fields than CONV_PATCH_LIMIT go tap by tap instead: the patch is on the
        # stack.
        max_conv_patch=min(-(-max([s.weights.size // s.weights.shape[0] for op in plan.steps
                                   if isinstance(op, ir.RowPipeline) for s in op.stages
                                   if isinstance(s, ir.Conv2D)], default=4) // 4) * 4, CONV_PATCH_LIMIT),
        max_pipeline_buffers=max([len(op.activation_inputs()) + len(op.stages) for op in plan.steps
                                  if isinstance(op, ir.RowPipeline)], default=1),
        # The narrow 1x1 kernels to instantiate, the receptive fields CONV_PACKED and CONV_VECTORS take.
        narrow_pointwise_inputs=[n for n in NARROW_POINTWISE_INPUTS if POINTWISE_NARROW[n] in rendered_kernels.kernels],
        max_packed_patch=MAX_PACKED_PATCH, max_vector_field=MAX_VECTOR_FIELD,
        # POINTWISE_STAGED's and POINTWISE_TRIPLES' stack of split inputs.
        staged_words=_staged_words(layers),
        depthwise_zero_rows=ZeroRows.of(layers),
        # The row kernels of the variant, which conv_params.kernel names (all of them, in the
        # enum), those kernels.c holds (`kernel_used` by name, the stage kinds they make up,
        # DEPTHWISE_GROUPS' windows), and the layouts of conv_params.blocks they walk.
        variant=variant, stage_kinds=output_stage.stage_kinds(_transposes(plan)), row_kernels=row_kernels(variant),
        rendered_kernels=rendered_kernels.kernels, kernel_used=rendered_kernels.used(),
        rendered_kinds=rendered_kernels.kinds(), depthwise_3x3=rendered_kernels.depthwise_3x3,
        depthwise_any=rendered_kernels.depthwise_any, unsigned_rounding=rendered_kernels.unsigned(),
        roundings=list(OutputRounding),
        # The convolution rows' output stage and the ADD stage of the model's arithmetic.
        output_stage=output_stage, add_kind=output_stage.add_kind,
        block_layouts={layout.name: layout for layout in LAYOUTS},
        scale_words=SCALE_WORDS,
        ort=graph.arithmetic is ir.Arithmetic.ONNXRUNTIME,  # ONNX Runtime's kernels and build flags
        input_layout=graph.input.layout.name,  # NHWC, or an ONNX model's float input as it is: NCHW
        float_flags=" ".join(C_FLOAT_FLAGS),
    )
    templates = {**C_FILES, KERNELS_C: f"{variant.value}/kernels.c.j2"}  # one header for every variant
    rendered = {name.format(p=p): env.get_template(template).render(context)
                for name, template in templates.items()}
    sources = sorted(name.format(p=p) for name in templates if name.endswith(".c"))
    for name, template in BUILD_FILES.items():
        rendered[name.format(p=p)] = env.get_template(template).render(
            context, sources=sources, cpu_flags={t: cpu_flags(t) for t in TARGETS},
            kernels=variant.value)
    return rendered
