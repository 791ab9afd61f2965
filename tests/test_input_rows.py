"""--input rows: the input streamed into the first pipeline by the caller's fill function.

The arena then holds a ring of input rows, never the frame; the planner sizes that ring from
the engine's fill requests and its byte-replay proof covers them; the C equals TFLite bit for
bit on the host (the harness keeps each frame outside the arena and hands rows to
<p>_run_rows()) and on the emulated Cortex-M4; a fill that fails stops the run with
<P>_ERROR_FILL; models whose input cannot stream are refused with a reason.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_tools

import model_zoo
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.host_sim.build import build_host, row_trace_flags
from mnv2gen.host_sim.runner import trace_rows_host
from mnv2gen.plan.arena import PlanError, check_plan
from mnv2gen.plan.streaming import fill_runs
from mnv2gen.preprocess import Normalize, PixelFormat, Preprocess, Resize, Scale, yuv_to_rgb
from mnv2gen.targets import C_FLOAT_FLAGS, C_WARNINGS
from mnv2gen.verification.board import run_on_board
from mnv2gen.verification.compare import make_inputs
from mnv2gen.verification.harness import find_compiler
from mnv2gen.verification.host import verify
from test_engine_trace import assert_same_trace, planned_trace

FLAGSHIP = "mnv2_a035_96_c1000"
ROWS = Options(input="rows")
FLAGSHIP_ARENA = 15_840  # the frame schedule's: 30,720, of which the input is 27,648
FLAGSHIP_MACS = 11_934_128  # both schedules: streaming recomputes nothing
# The demo's camera: RGB565 at 160x120, resized (bilinear) to the flagship's 96x96.
CAMERA = Options(input="rows", input_format="rgb565", input_scale_from="160x120")
CAMERA_ARENA = 16_800  # FLAGSHIP_ARENA + the sensor ring: 2 rows of 160 pixels, 3 bytes each once decoded


@pytest.fixture(scope="module")
def flagship():
    return compile_model(model_zoo.get_model(FLAGSHIP), ROWS)


def macs(result) -> int:
    return sum(op.macs() for op in result.plan.steps)


def test_flagship_streams_in_half_the_arena_with_the_same_macs(flagship):
    frame = compile_model(model_zoo.get_model(FLAGSHIP))
    assert flagship.arena_bytes == FLAGSHIP_ARENA <= 16_384
    assert frame.arena_bytes == 30_720
    assert macs(flagship) == macs(frame) == FLAGSHIP_MACS
    ring = flagship.plan.lifetimes.of(flagship.graph.input)
    assert (ring.rows, ring.nbytes) == (3, 3 * 96 * 3)  # the stem's 3x3 window, never the frame
    assert max(b.nbytes for b in flagship.plan.lifetimes.buffers) < 27_648


def test_header_names_the_row_api_with_exact_figures(flagship):
    header = flagship.files["mnv2_model.h"]
    macros = dict(re.findall(r"#define (MNV2_\w+) (\d+)", header))
    assert {k: int(macros[k]) for k in ("MNV2_INPUT_BYTES", "MNV2_INPUT_ROWS", "MNV2_INPUT_ROW_BYTES",
                                        "MNV2_INPUT_MAX_FILL_ROWS", "MNV2_INPUT_RING_ROWS", "MNV2_ARENA_BYTES",
                                        "MNV2_ERROR_FILL")} == {
        "MNV2_INPUT_BYTES": 27_648, "MNV2_INPUT_ROWS": 96, "MNV2_INPUT_ROW_BYTES": 288,
        "MNV2_INPUT_MAX_FILL_ROWS": 3, "MNV2_INPUT_RING_ROWS": 3, "MNV2_ARENA_BYTES": FLAGSHIP_ARENA,
        "MNV2_ERROR_FILL": 7}
    assert "int mnv2_run_rows(mnv2_rows_fn fill, void *ctx);" in header
    assert "mnv2_input(void)" not in header and "int mnv2_run(void)" not in header
    # The frame API is untouched for frame builds.
    frame_header = compile_model(model_zoo.get_model(FLAGSHIP)).files["mnv2_model.h"]
    assert "int8_t *mnv2_input(void);" in frame_header and "run_rows" not in frame_header


def test_fill_requests_never_wrap_the_ring():
    assert fill_runs(0, 2, 3) == [(0, 3)]
    assert fill_runs(3, 4, 3) == [(3, 2)]
    assert fill_runs(5, 6, 3) == [(5, 1), (6, 1)]  # slot 2, then slot 0
    assert fill_runs(4, 3, 3) == []


def test_the_proof_covers_the_input_ring(flagship):
    plan = flagship.plan
    check_plan(plan)
    fills = [e for e in plan.events if e.writes[0] is flagship.graph.input]
    assert sum(last - first + 1 for _, first, last in (e.writes for e in fills)) == 96  # each row once
    # A ring one row short is caught: a fill would destroy a row the stem still reads.
    ring = plan.lifetimes.of(flagship.graph.input)
    ring.rows = 2
    try:
        with pytest.raises(PlanError, match="destroys row 0 of"):
            check_plan(plan)
    finally:
        ring.rows = 3
    # So is a ring placed over another live buffer.
    other = plan.lifetimes.of(plan.steps[0].output)
    with pytest.raises(PlanError):
        check_plan(dataclasses.replace(plan, offsets={**plan.offsets, id(ring): plan.offsets[id(other)]}))


def test_engine_fills_and_reads_the_rows_the_plan_says(flagship, tmp_path):
    write_files(flagship.files, tmp_path)
    binary = build_host(tmp_path, "mnv2", tmp_path / "model_rows", opt="-O1", extra_flags=row_trace_flags("mnv2"))
    ours = trace_rows_host(binary, make_inputs(flagship.graph, 1)[0])
    assert ("write", -1, 0, 95) in ours  # the caller's fill wrote the last input row
    assert_same_trace(ours, planned_trace(flagship.plan.steps, flagship.plan.events))


def assert_streams_bit_exact(model, out_dir, count: int = 20, sanitize: bool = False):
    result = compile_model(model, ROWS)
    write_files(result.files, out_dir)
    report = verify(model, result, out_dir, count=count, use_tflm=False, sanitize=sanitize)
    assert report.inputs == count + 2 and report.matched_tflite == report.inputs, report.first_mismatch
    return result


def test_flagship_streamed_is_bit_exact(tmp_path):
    assert_streams_bit_exact(model_zoo.get_model(FLAGSHIP), tmp_path, count=30)


# First ops the row pipelines take, with random kernels, strides, paddings (VALID ones leave
# rows no window reads: they are still asked for, last) and shapes.
SINGLE_OPS = ("conv", "conv_per_tensor", "depthwise")


@pytest.mark.parametrize("kind", SINGLE_OPS)
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.full), pytest.param(2, marks=pytest.mark.full)])
def test_single_ops_stream_bit_exact(kind, seed, tmp_path):
    """Under ASan/UBSan: the fills land in the ring, never past it."""
    assert_streams_bit_exact(model_zoo.single_op_model(kind, seed), tmp_path, sanitize=True)


@pytest.mark.full
@pytest.mark.parametrize("name", ["mnv1_a025_96_c10", "mnv2_a035_nonsquare_c10", "mnv2_a035_96_zeropad",
                                  "mnv2_a035_160_c10", "mnv2_a10_96_c10", "mnv2_a05_128_c2"])
def test_fixtures_stream_bit_exact(name, tmp_path):
    assert_streams_bit_exact(model_zoo.get_model(name), tmp_path, count=6)


def test_layer_by_layer_schedule_streams_bit_exact(tmp_path):
    """--optimize speed: the stem is a pipeline of its own, fed by fill."""
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, Options(input="rows", optimize="speed"))
    assert len(result.plan.steps[0].stages) == 1
    write_files(result.files, tmp_path)
    report = verify(model, result, tmp_path, count=4, use_tflm=False)
    assert report.matched_tflite == report.inputs


FILL_FAILS = r"""
#include <stdio.h>
#include <string.h>
#include "mnv2_model.h"

static mnv2_row_t frame[MNV2_INPUT_ROWS * MNV2_INPUT_ROW_BYTES]; /* the model's input, or sensor pixels */
static int32_t calls, fail_at = -1, asked_after_failure;

static int fill(void *ctx, int32_t first_row, int32_t row_count, mnv2_row_t *dst)
{
    (void)ctx;
    if (fail_at >= 0 && calls > fail_at) {
        asked_after_failure = 1;
    }
    if (calls++ == fail_at) {
        return -5;
    }
    memcpy(dst, frame + first_row * MNV2_INPUT_ROW_BYTES, (size_t)row_count * MNV2_INPUT_ROW_BYTES);
    return 0;
}

int main(void)
{
    static int8_t good[MNV2_OUTPUT_BYTES];
    int32_t i, requests;
    for (i = 0; i < MNV2_INPUT_ROWS * MNV2_INPUT_ROW_BYTES; ++i) {
        frame[i] = (mnv2_row_t)(i * 7);
    }
    if (mnv2_run_rows(fill, NULL) != MNV2_OK) return 10;
    requests = calls;
    memcpy(good, mnv2_output(), MNV2_OUTPUT_BYTES);
    calls = 0; fail_at = 5;
    if (mnv2_run_rows(fill, NULL) != MNV2_ERROR_FILL) return 11;
    if (calls != 6 || asked_after_failure) return 12; /* the run stopped at the failing request */
    if (mnv2_run_rows(NULL, NULL) != MNV2_ERROR_FILL) return 13;
    calls = 0; fail_at = -1;
    if (mnv2_run_rows(fill, NULL) != MNV2_OK) return 14; /* a failed run leaves nothing behind */
    if (memcmp(good, mnv2_output(), MNV2_OUTPUT_BYTES) != 0) return 15;
    printf("requests %ld\n", (long)requests);
    return 0;
}
"""


@pytest.mark.parametrize("scaled", [False, True], ids=["input rows", "sensor rows"])
def test_a_failing_fill_stops_the_run_with_its_own_code(flagship, scaled, request, tmp_path):
    """Also when fill delivers sensor rows that the C resizes (a failure at a sensor request)."""
    if scaled:
        flagship = request.getfixturevalue("camera")
    write_files(flagship.files, tmp_path)
    (tmp_path / "main.c").write_text(FILL_FAILS)
    binary = tmp_path / "fill_fails"
    sources = sorted(str(p) for p in tmp_path.glob("*.c"))
    subprocess.run([find_compiler(), "-O1", *C_WARNINGS, *C_FLOAT_FLAGS, "-I", str(tmp_path), *sources,
                    "-o", str(binary)], check=True, capture_output=True)
    run = subprocess.run([str(binary)], capture_output=True, text=True)
    assert run.returncode == 0, f"exit {run.returncode}"
    filled = flagship.plan.stream.sensor.tensor if scaled else flagship.graph.input
    fills = [e for e in flagship.plan.events if e.writes[0] is filled and not e.reads]
    assert run.stdout.split() == ["requests", str(len(fills))] and len(fills) >= 60


@pytest.mark.parametrize("name, why", [("fc_rows_head", "its first op is FULLY_CONNECTED"),
                                       ("mnv2_a035_96_uint8_float", "its first op is QUANTIZE"),
                                       ("op_add", "its input is also read by a later op")])
def test_models_that_cannot_stream_are_refused(name, why, tmp_path):
    # op_add: a convolution of the input, then an ADD of the input and that: two readers.
    model = model_zoo.single_op_model("add", 0) if name == "op_add" else model_zoo.get_model(name)
    run = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(model), "--out", str(tmp_path / "c"),
                          "--input", "rows"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "--input rows" in lines[0] and why in lines[0], run.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.full
def test_flagship_streams_bit_exact_on_the_m4(flagship, tmp_path):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    board = BOARDS["mps2-an386"]
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, Options(input="rows", target=board.core))
    write_files(result.files, tmp_path / "rows")
    rows = run_on_board(model, result, tmp_path / "rows", board, count=1, per_layer=False)
    assert rows.bit_exact and rows.inputs == 3
    assert rows.stack_bytes <= 2048
    frame_result = compile_model(model, Options(target=board.core))
    write_files(frame_result.files, tmp_path / "frame")
    frame = run_on_board(model, frame_result, tmp_path / "frame", board, count=1, per_layer=False)
    # The row copies are counted in the streamed run; it stays within 3% of the frame's.
    assert rows.instructions_per_inference <= frame.instructions_per_inference * 1.03


# ------------------------------------------------------------------ fused preprocessing

NORMALIZATIONS = {"x/255": ((0.0,), (255.0,), 0.0), "(x/127.5)-1": ((0.0,), (127.5,), 1.0),
                  "x / 127.5 - 1": ((0.0,), (127.5,), 1.0), "(x-127.5)/127.5": ((127.5,), (127.5,), 0.0),
                  "mean=123.7,116.3,103.5;std=58.4,57.1,57.4": ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4), 0.0)}


@pytest.mark.parametrize("text", sorted(NORMALIZATIONS))
def test_normalizations_read_as_numbers(text):
    n = Normalize.parse(text)
    assert (n.mean, n.divisor, n.offset) == NORMALIZATIONS[text]


@pytest.mark.parametrize("text", ["x*255", "exp(x)", "x/0", "(x/127.5)-1;import os", "mean=1,2;std=3"])
def test_other_normalizations_are_refused(text):
    with pytest.raises(ValueError):
        Normalize.parse(text)


def scalar_reference(x: int, c: int, n: Normalize, scale: float, zero_point: int) -> int:
    """The README's definition, one value at a time: float32 steps, then AffineQuantize."""
    f32 = np.float32
    mean, divisor = (f32(v[c] if len(v) > 1 else v[0]) for v in (n.mean, n.divisor))
    value = f32(f32(f32(f32(x) - mean) / divisor) - f32(n.offset))
    quotient = float(f32(value / f32(scale)))
    rounded = math.copysign(math.floor(abs(quotient) + 0.5), quotient)  # C's roundf, exactly
    return int(min(max(rounded + zero_point, -128), 127))


@pytest.mark.parametrize("text", sorted(NORMALIZATIONS))
def test_pixel_tables_are_the_definition(text):
    t = compile_model(model_zoo.get_model(FLAGSHIP)).graph.input
    n = Normalize.parse(text)
    tables = Preprocess(PixelFormat.RGB888, n).tables(t)
    expected = [[scalar_reference(x, c, n, t.scale, t.zero_point) for x in range(256)] for c in range(3)]
    assert tables.tolist() == expected
    assert len(set(tables[0].tolist())) > 100  # the tables resolve the input, not a constant


@pytest.mark.parametrize("fmt, text", [("rgb888", "(x/127.5)-1"), ("gray8", "x/255"),
                                       ("rgb888", "mean=123.7,116.3,103.5;std=58.4,57.1,57.4"),
                                       ("bgr888", "(x-127.5)/127.5"), ("rgb565", "x/255"),
                                       ("yuv422", "(x/127.5)-1")])
def test_pixels_stream_bit_exact(fmt, text, tmp_path):
    """Sensor pixels in, converted by the C's tables in the ring: equal to TFLite run on the
    reference's quantized input."""
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, Options(input="rows", input_format=fmt, normalize=text))
    header = result.files["mnv2_model.h"]
    assert f"#define MNV2_INPUT_ROW_BYTES {96 * PixelFormat(fmt).channels}" in header
    assert "typedef uint8_t mnv2_row_t;" in header
    write_files(result.files, tmp_path)
    report = verify(model, result, tmp_path, count=8, use_tflm=False)
    assert report.matched_tflite == report.inputs == 10 and report.distinct_outputs > 1


@pytest.mark.parametrize("flags, message", [(["--input-format", "rgb888"], "add --input rows"),
                                            (["--input", "rows", "--normalize", "x/255"], "add --input-format"),
                                            (["--input", "rows", "--input-format", "gray8", "--normalize", "x**2"],
                                             "cannot read the normalization"),
                                            (["--input", "rows", "--input-scale-from", "160x120"], "add --input-format"),
                                            (["--input", "rows", "--input-format", "rgb565", "--input-scale-from",
                                              "160 by 120"], "cannot read the sensor size"),
                                            (["--input", "rows", "--input-format", "yuv422", "--input-scale-from",
                                              "161x120"], "must be even"),
                                            (["--input", "rows", "--input-format", "rgb565", "--input-scale-from",
                                              "5000x120"], "each 1 to 4096"),
                                            (["--input", "rows", "--input-format", "rgb565", "--input-resize",
                                              "nearest"], "add --input-scale-from")])
def test_preprocessing_flags_are_checked(flags, message, tmp_path):
    run = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(model_zoo.get_model(FLAGSHIP)),
                          "--out", str(tmp_path / "c"), *flags], capture_output=True, text=True)
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_rgb565_widens_each_field_by_repeating_its_top_bits():
    words = np.array([0xF800, 0x07E0, 0x001F, 0x8410, 0x0000, 0xFFFF], dtype="<u2")
    pixels = words.view(np.uint8).reshape(-1, 2)
    assert PixelFormat.RGB565.bytes_of_channels(pixels, 3).tolist() == [
        [255, 0, 0], [0, 255, 0], [0, 0, 255], [132, 130, 132], [0, 0, 0], [255, 255, 255]]
    assert PixelFormat.BGR888.bytes_of_channels(np.array([[1, 2, 3]], np.uint8), 3).tolist() == [[3, 2, 1]]


def test_yuv422_is_bt601_full_range_in_16_bit_fixed_point():
    # Y0 U Y1 V: the pair shares U and V; grey stays grey, the extremes clamp.
    pixels = np.array([[16, 128], [235, 128], [76, 85], [149, 255], [0, 0], [255, 255]], np.uint8)
    rgb = PixelFormat.YUV422.bytes_of_channels(pixels, 3).astype(int)
    assert rgb[0].tolist() == [16, 16, 16] and rgb[1].tolist() == [235, 235, 235]
    assert rgb[4].tolist() == [178, 0, 0] and rgb[5].tolist() == [255, 208, 28]  # U 0, V 255: red, clamped
    # Against BT.601 full range in float: never more than one step apart, over every Y, U, V.
    y, u, v = (a.ravel() for a in np.meshgrid(np.arange(0, 256, 3), np.arange(0, 256, 5), np.arange(0, 256, 7)))
    exact = np.stack([y + 1.402 * (v - 128.0), y - 0.344136 * (u - 128.0) - 0.714136 * (v - 128.0),
                      y + 1.772 * (u - 128.0)], axis=-1)
    ours = yuv_to_rgb(y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)).astype(float)
    assert np.abs(ours - np.clip(exact, 0, 255)).max() <= 0.5 + 2 ** -8


def scalar_axis(d: int, source: int, target: int, resize: str) -> tuple[int, int, int]:
    """The README's source pixels and weight of destination pixel d, one at a time."""
    if resize == "nearest":
        i = min((2 * d + 1) * source // (2 * target), source - 1)
        return i, i, 0
    s = min(max(((2 * d + 1) * source * 256 + target) // (2 * target) - 128, 0), (source - 1) * 256)
    return s >> 8, min((s >> 8) + 1, source - 1), s & 255


@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
@pytest.mark.parametrize("source, target", [(120, 96), (160, 96), (96, 96), (50, 96), (7, 3)])
def test_resize_axes_are_the_definition(resize, source, target):
    axis = Scale(source, source, Resize(resize)).axis(source, target)
    expected = [scalar_axis(d, source, target, resize) for d in range(target)]
    assert list(zip(axis.first, axis.second, axis.weight)) == expected
    if source == target:  # the same size: every pixel itself
        assert axis.first == tuple(range(target)) and set(axis.weight) == {0}


def test_bilinear_blend_is_the_definition_and_near_the_exact_one():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(2, 12, 20, 3), dtype=np.uint8)
    scale = Scale(20, 12)
    ours = scale.resized(x, 5, 8).astype(int)
    rows, columns = scale.axis(12, 5), scale.axis(20, 8)
    for n, y, c, ch in [(0, 0, 0, 0), (1, 4, 7, 2), (0, 2, 3, 1), (1, 1, 6, 0)]:
        y0, y1, wy, x0, x1, wx = rows.first[y], rows.second[y], rows.weight[y], columns.first[c], columns.second[c], columns.weight[c]
        p = x[n].astype(int)
        above = p[y0, x0, ch] * (256 - wx) + p[y0, x1, ch] * wx
        below = p[y1, x0, ch] * (256 - wx) + p[y1, x1, ch] * wx
        assert ours[n, y, c, ch] == (above * (256 - wy) + below * wy + 32768) >> 16
    # Exact bilinear at the exact source positions (half-pixel centres): within 2 steps (the
    # positions are rounded to 1/256 of a pixel, the result down to an integer).
    sy = np.clip((np.arange(5) + 0.5) * 12 / 5 - 0.5, 0, 11)
    sx = np.clip((np.arange(8) + 0.5) * 20 / 8 - 0.5, 0, 19)
    fy, fx = (sy - np.floor(sy))[:, None, None], (sx - np.floor(sx))[None, :, None]
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, 11), np.minimum(x0 + 1, 19)
    p = x.astype(float)
    exact = ((p[:, y0][:, :, x0] * (1 - fx) + p[:, y0][:, :, x1] * fx) * (1 - fy)
             + (p[:, y1][:, :, x0] * (1 - fx) + p[:, y1][:, :, x1] * fx) * fy)
    assert np.abs(ours - exact).max() <= 2
    assert (Scale(20, 12, Resize.NEAREST).resized(x, 12, 20) == x).all()  # the same size: the identity


@pytest.fixture(scope="module")
def camera():
    return compile_model(model_zoo.get_model(FLAGSHIP), CAMERA)


def test_sensor_rows_are_planned_and_proved(camera, flagship):
    plan = camera.plan
    assert camera.arena_bytes == CAMERA_ARENA and macs(camera) == FLAGSHIP_MACS
    sensor = plan.stream.sensor.tensor
    ring = plan.lifetimes.of(sensor)
    assert (ring.rows, ring.nbytes, ring.first, ring.last) == (2, 2 * 160 * 3, 0, 0)
    header = camera.files["mnv2_model.h"]
    macros = dict(re.findall(r"#define (MNV2_\w+) (\d+)", header))
    assert {k: int(macros[k]) for k in ("MNV2_INPUT_ROWS", "MNV2_INPUT_ROW_BYTES", "MNV2_INPUT_MAX_FILL_ROWS",
                                        "MNV2_INPUT_RING_ROWS", "MNV2_ARENA_BYTES")} == {
        "MNV2_INPUT_ROWS": 120, "MNV2_INPUT_ROW_BYTES": 320, "MNV2_INPUT_MAX_FILL_ROWS": 2,
        "MNV2_INPUT_RING_ROWS": 2, "MNV2_ARENA_BYTES": CAMERA_ARENA}
    # Every sensor row asked for once, in order; each input row made once, from its window.
    fills = [e.writes for e in plan.events if e.writes[0] is sensor]
    assert [r for _, first, last in fills for r in range(first, last + 1)] == list(range(120))
    made = [e for e in plan.events if e.writes[0] is camera.graph.input]
    assert [e.writes[1] for e in made] == list(range(96))
    assert all(e.reads == ((sensor, *plan.stream.sensor.windows[e.writes[1]]),) for e in made)
    check_plan(plan)
    ring.rows = 1  # one row short: a fill destroys the row above before the blend reads it
    try:
        with pytest.raises(PlanError, match="of 'sensor rows'"):
            check_plan(plan)
    finally:
        ring.rows = 2


@pytest.mark.parametrize("fmt, flags", [("yuv422", {"normalize": "(x/127.5)-1"}),
                                        ("gray8", {"input_resize": "nearest", "normalize": "x/255"})])
def test_scaled_sensor_rows_stream_bit_exact(fmt, flags, tmp_path):
    """160x120 sensor pixels in, resized and converted by the C: equal to TFLite run on the
    reference's quantized input (the harness checks every sensor row is asked for once, in order).
    rgb565 with bilinear, the demo's camera, is tests/test_demo.py's and the M4 test's below."""
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, Options(input="rows", input_format=fmt, input_scale_from="160x120", **flags))
    assert f"#define MNV2_INPUT_ROW_BYTES {160 * PixelFormat(fmt).channels}" in result.files["mnv2_model.h"]
    write_files(result.files, tmp_path)
    report = verify(model, result, tmp_path, count=4, use_tflm=False)
    assert report.matched_tflite == report.inputs == 6, report.first_mismatch


@pytest.mark.full
def test_camera_streams_bit_exact_on_the_m4(tmp_path):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    board = BOARDS["mps2-an386"]
    model = model_zoo.get_model(FLAGSHIP)
    result = compile_model(model, dataclasses.replace(CAMERA, target=board.core))
    write_files(result.files, tmp_path)
    run = run_on_board(model, result, tmp_path, board, count=1, per_layer=False)
    assert run.bit_exact and run.inputs == 3
    assert run.stack_bytes <= 2048


def test_engine_pulls_the_scaled_rows_the_plan_says(camera, tmp_path):
    """With sensor rows, the engine still asks for the input's rows, and reads and writes
    every row of the first pipeline, in the order the plan's events say (the sensor rows
    themselves are model.c's, below the engine: their order is the harness's check)."""
    write_files(camera.files, tmp_path)
    binary = build_host(tmp_path, "mnv2", tmp_path / "model_rows", opt="-O1", extra_flags=row_trace_flags("mnv2"))
    frame = Preprocess(PixelFormat.RGB565, Normalize(), Scale(160, 120)).random_frames(camera.graph.input, 1)[0]
    ours = trace_rows_host(binary, frame)
    sensor = camera.plan.stream.sensor.tensor
    engine = [dataclasses.replace(e, reads=tuple(r for r in e.reads if r[0] is not sensor))
              for e in camera.plan.events if e.writes[0] is not sensor]
    assert ("write", -1, 0, 95) in ours
    assert_same_trace(ours, planned_trace(camera.plan.steps, engine))


@pytest.mark.parametrize("kind, resize", [("conv", "bilinear"), ("depthwise", "nearest")])
def test_single_ops_scale_sensor_rows_bit_exact(kind, resize, tmp_path):
    """Under ASan/UBSan, first ops of random shapes and paddings (VALID ones leave input rows,
    and so sensor rows, no window reads) fed a 37x23 gray sensor, up or down to their input."""
    model = model_zoo.single_op_model(kind, 0)
    result = compile_model(model, Options(input="rows", input_format="gray8", input_scale_from="37x23",
                                          input_resize=resize))
    write_files(result.files, tmp_path)
    report = verify(model, result, tmp_path, count=4, use_tflm=False, sanitize=True)
    assert report.matched_tflite == report.inputs == 6, report.first_mismatch
