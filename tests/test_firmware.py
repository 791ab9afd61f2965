"""The generated C on emulated Cortex-M cores (QEMU): bit-exact against TFLite, with exact and
repeatable instruction counts, sizes, stack, link-time fit checks and a fault handler that
fails loudly. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (CI
installs them with tools/setup.sh); a missing one fails these tests, which are the only ones
that execute the Cortex-M kernels.

QEMU runs take about a second per inference of the a=0.35/96 network, so every run uses one
random input besides the all-min and all-max ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import model_zoo
from conftest import require_tools
import tflite_edit
from mnv2gen.codegen.kernels import ROW_KERNELS
from mnv2gen.codegen.lower import lower
from mnv2gen.codegen.render import KERNEL_VARIANTS, Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.errors import UserError
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.firmware.build import build_firmware
from mnv2gen.firmware.runner import qemu_command, run_qemu
from mnv2gen.verification.board import run_on_board
from mnv2gen.verification.compare import make_inputs, numpy_dtype

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "mobilenet_v2_035_96.tflite"
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "arm-none-eabi-size", "qemu-system-arm")


@pytest.fixture
def firmware_toolchain():
    require_tools(*TOOLS)


needs_toolchain = pytest.mark.usefixtures("firmware_toolchain")

M4, M7, M55 = "mps2-an386", "mps2-an500", "mps3-an547"
KERNEL_NAMES = {kernel.name for kernel in ROW_KERNELS}


def model_path(name: str) -> Path:
    """The bundled default model (a=0.35, 96x96, 1000 classes), or a fixture of the zoo."""
    if name == "default":
        return DEFAULT_MODEL if DEFAULT_MODEL.exists() else model_zoo.get_model("mnv2_a035_96_c1000")
    return model_zoo.get_model(name)


def compile_for(name: str, board: str, out_dir: Path, prefix: str = "mnv2"):
    path = model_path(name)
    result = compile_model(path, Options(prefix=prefix, target=BOARDS[board].core))
    write_files(result.files, out_dir)
    return path, result


def run(name: str, board: str, out_dir: Path, **kwargs):
    path, result = compile_for(name, board, out_dir, kwargs.get("prefix", "mnv2"))
    return run_on_board(path, result, out_dir, BOARDS[board], count=1, **kwargs)


def assert_measured(report) -> None:
    assert report.bit_exact, f"{report.matched}/{report.inputs} outputs identical on {report.board.name}"
    assert report.inputs == 3
    assert report.instructions_per_inference > 0 and len(report.instructions) == 3
    sizes = report.sizes
    assert sizes["text_bytes"] > 0 and sizes["weights_bytes"] > 0
    assert sizes["weights_bytes"] <= sizes["rodata_bytes"]  # weights are flash constants, not code
    assert sizes["bss_bytes"] >= report.arena_bytes > 0
    assert 0 < report.stack_bytes < sizes["stack_reserved_bytes"]


# The default network on all three cores; two other fixtures (MobileNetV1; float input and
# output, which exercises each core's FPU in QUANTIZE/DEQUANTIZE) on the M4 and the M55.
@needs_toolchain
@pytest.mark.parametrize("name, board", [
    ("default", M4), ("default", M7), ("default", M55),
    ("mnv1_a025_96_c10", M4), ("mnv1_a025_96_c10", M55),
    ("mnv2_a035_96_uint8_float", M4), ("mnv2_a035_96_uint8_float", M55),
    ("mnv2_a035_96_c1_sigmoid", M7),
])
def test_bit_exact_on_board(name, board, out_dir):
    assert_measured(run(name, board, out_dir))


# Every fixture of the zoo on the DSP kernels (the M7 runs the M4's) and the Helium ones.
@needs_toolchain
@pytest.mark.full
@pytest.mark.parametrize("board", [M4, M55])
@pytest.mark.parametrize("name", list(model_zoo.MODELS))
def test_every_fixture_is_bit_exact_on_the_simd_kernels(name, board, out_dir):
    report = run(name, board, out_dir, per_layer=False)
    assert report.bit_exact, f"{name}: {report.matched}/{report.inputs} outputs identical on {board}"
    # Within the reservation: a receptive field gathered on the stack once overflowed it here.
    assert 0 < report.stack_bytes < report.sizes["stack_reserved_bytes"] // 2, report.stack_bytes


@needs_toolchain
def test_instruction_count_is_exact_and_repeatable(out_dir, tmp_path):
    _, result = compile_for("mnv1_a025_96_c10", M4, out_dir)
    firmware = build_firmware(out_dir, "mnv2", BOARDS[M4], tmp_path)
    inputs = make_inputs(result.graph, 2, seed=3)
    dtype, shape = numpy_dtype(result.graph.output), result.graph.output.shape
    first, second = (run_qemu(firmware, inputs, dtype, shape) for _ in range(2))
    assert first.runs == second.runs  # same instructions and cycle estimate, input by input
    assert all(span.instructions > 0 and span.cycles >= span.instructions for span in first.runs)
    assert first.outputs.tobytes() == second.outputs.tobytes()


@needs_toolchain
def test_per_layer_counts_add_up(out_dir):
    path, result = compile_for("mnv1_a025_96_c10", M4, out_dir, prefix="tiny")
    report = run_on_board(path, result, out_dir, BOARDS[M4], count=1, prefix="tiny", per_layer=True)
    assert report.bit_exact
    steps = result.plan.steps
    assert [layer.layer for layer in report.layers] == list(range(len(steps)))
    assert [layer.macs for layer in report.layers] == [step.macs() for step in steps]
    assert all(layer.instructions > 0 and layer.op for layer in report.layers)
    # The layers come from a build with a hook call after each: a few instructions apart.
    total = sum(layer.instructions for layer in report.layers)
    assert abs(total - report.instructions[0]) <= 20 * len(report.layers)


@needs_toolchain
def test_mismatch_is_detected_on_target(out_dir):
    path, result = compile_for("mnv1_a025_96_c10", M4, out_dir)
    weights = out_dir / "mnv2_weights.c"
    # Break the first bias of the first array of biases or of the fast paths' blocks (which
    # start with a bias), as a wrong kernel or constant would.
    text, n = re.subn(r"(\w*(?:bias|blocks)\w*\[\d+\] = \{\s*)(-?\d+)", lambda m: f"{m[1]}{int(m[2]) + 100000}",
                      weights.read_text(), count=1)
    assert n == 1
    weights.write_text(text)
    report = run_on_board(path, result, out_dir, BOARDS[M4], count=1, per_layer=False)
    assert report.bit_exact is False and report.matched < report.inputs


@needs_toolchain
def test_fault_exits_non_zero(out_dir, tmp_path):
    compile_for("mnv1_a025_96_c10", M55, out_dir)
    firmware = build_firmware(out_dir, "mnv2", BOARDS[M55], tmp_path)
    (tmp_path / "input.bin").write_bytes(b"FALT")  # the harness runs an undefined instruction
    result = subprocess.run(qemu_command(firmware), cwd=tmp_path, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 6 and "harness: fault" in result.stderr


@needs_toolchain
def test_link_fails_clearly_when_the_model_does_not_fit(out_dir):
    # 1.76 MB of weights: too much for the STM32F746's 1 MB of flash, fine in the H743's 2 MB.
    with pytest.raises(UserError, match=r"does not fit the stm32f746 board: .*flash"):
        run("default", "stm32f746", out_dir)
    report = run("default", "stm32h743", out_dir)
    assert report.bit_exact is None and report.sizes["weights_bytes"] > 1_000_000


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnv2gen.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).parent, env=env)


@needs_toolchain
def test_cli_run_json(out_dir):
    result = run_cli("run", str(model_path("mnv1_a025_96_c10")), "--out", str(out_dir), "--board", M55,
                     "-n", "1", "--json", "--prefix", "tiny", "--no-layers")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["board"] == M55 and summary["bit_exact"] is True and summary["inputs"] == 3
    for key in ("instructions_per_inference", "text_bytes", "weights_bytes", "arena_bytes", "stack_bytes",
                "rodata_bytes", "data_bytes", "bss_bytes"):
        assert isinstance(summary[key], int), key
    assert summary["instructions_per_inference"] > 0 and summary["weights_bytes"] > 0


@needs_toolchain
def test_cli_run_profile_lists_the_costliest_layers_first(out_dir):
    result = run_cli("run", str(model_path("mnv1_a025_96_c10")), "--out", str(out_dir), "-n", "1",
                     "--optimize", "speed", "--profile")
    assert result.returncode == 0, result.stderr
    profile = result.stdout.split("costliest layers (10 of ")[1].splitlines()[1:]
    counts = [int(line.split()[2].replace(",", "")) for line in profile]
    shares = [float(line.split("running")[1].split("%")[0]) for line in profile]
    assert len(counts) == 10 and counts == sorted(counts, reverse=True)
    assert shares == sorted(shares) and 0 < shares[-1] <= 100.0
    both = run_cli("run", str(model_path("mnv1_a025_96_c10")), "--out", str(out_dir), "--profile", "--no-layers")
    assert both.returncode == 2 and "not allowed with" in both.stderr

def test_cli_run_without_toolchain_names_the_package(out_dir, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no cross compiler, no QEMU
    result = run_cli("run", str(model_path("mnv1_a025_96_c10")), "--out", str(out_dir), "-n", "1", env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "apt-get install gcc-arm-none-eabi" in result.stderr


# The DSP and Helium kernels' odd cases (channel counts not a multiple of 4, strides, padding, patches,
# border pixels) on single-op models with random shapes; the host build runs the portable ones.
DSP_KINDS = ("conv", "depthwise", "pad", "fc", "add", "mean")


@needs_toolchain
@pytest.mark.parametrize("board", [M4, M55])  # the DSP kernels, and the Helium ones
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.full), pytest.param(2, marks=pytest.mark.full)])
@pytest.mark.parametrize("kind", DSP_KINDS)
def test_dsp_kernels_are_bit_exact_on_single_ops(kind, seed, board, tmp_path):
    path = model_zoo.single_op_model(kind, seed)
    result = compile_model(path, Options(target=BOARDS[board].core))
    write_files(result.files, tmp_path)
    report = run_on_board(path, result, tmp_path, BOARDS[board], count=4, seed=seed, per_layer=False)
    assert report.bit_exact, f"{kind} seed {seed}: {report.matched}/{report.inputs}"


# Helium's MEAN where its int16 sums are widened more than once (272 pixels) and both of its
# channel loops end in a tail (21 channels: sixteen, then five of eight lanes).
@needs_toolchain
def test_helium_mean_over_many_pixels_is_bit_exact(tmp_path):
    path = model_zoo.long_mean_model()
    result = compile_model(path, Options(target=BOARDS[M55].core))
    write_files(result.files, tmp_path)
    report = run_on_board(path, result, tmp_path, BOARDS[M55], count=4, seed=5, per_layer=False)
    assert report.bit_exact, f"{report.matched}/{report.inputs}"


# The kernel each fast-path model is for, on the M4's DSP kernels and on the M55's Helium
# ones: Helium takes every 1x1 convolution with POINTWISE_VECTORS (four pixels per weight
# vector), every 3x3 depthwise one with DEPTHWISE_VECTORS and receptive fields of at most 32
# bytes with CONV_VECTORS, has no regrouped FULLY_CONNECTED weights (its dot products do
# better), and a receptive field over 64 bytes takes the portable path.
FAST_PATH_KERNELS = {
    **{name: ("DEPTHWISE_GROUPS", "DEPTHWISE_VECTORS" if name.startswith("dw3") else "DEPTHWISE_GROUPS")
       for name in model_zoo.FAST_PATH_OPS if name.startswith("dw")},
    "dw3_s2_valid_c16": ("DEPTHWISE_GROUPS", "DEPTHWISE_SIXTEENS"),
    # POINTWISE_TRIPLES: rows of 7, 5 and 4 pixels (a pair or a lone pixel left after the
    # triples), odd and even words of input, an odd channel count.
    "pw_c4_s1": ("POINTWISE_TRIPLES", "POINTWISE_VECTORS"),
    "pw_c8_s1": ("POINTWISE_NARROW_8", "POINTWISE_VECTORS"),
    "pw_c12_s2": ("POINTWISE_TRIPLES", "POINTWISE_VECTORS"),
    "pw_c16_s1": ("POINTWISE_NARROW_16", "POINTWISE_VECTORS"),
    "pw_c24_o10_s2": ("POINTWISE_TRIPLES", "POINTWISE_VECTORS"),
    "pw_c40_o16_s1": ("POINTWISE_TRIPLES", "POINTWISE_VECTORS"),
    "pw_c136_o7_s1": ("POINTWISE_STAGED", "POINTWISE_VECTORS"),  # wider than MAX_TRIPLE_INPUTS
    "pw_wide_c200_o6_s1": ("POINTWISE_PAIRS", "POINTWISE_VECTORS"),  # wider than MAX_STAGED_INPUTS
    "add_c8": ("ADD_TABLES", "ADD_TABLES"),
    "conv3_s2_same_c3": ("CONV_PACKED", "CONV_VECTORS"),
    "conv2x3_s1_valid_c7_o5": ("CONV_PACKED", "CONV_PACKED"),
    "conv3_s1_same_c12_o6": ("CONV_PIXELS", "CONV_PIXELS"),
    "fc_d64_u10": ("FULLY_CONNECTED_STAGED", "FULLY_CONNECTED_PORTABLE"),
    "fc_rows3_d32_u5": ("FULLY_CONNECTED_STAGED", "FULLY_CONNECTED_PORTABLE"),
}


def lowered_params(result, board: str) -> list[dict]:
    """The params of every layer and pipeline stage of a compiled model, lowered for the
    board's kernels: {field: value} as codegen/values.py describes them."""
    params = []
    for layer in lower(result.plan, variant=KERNEL_VARIANTS[BOARDS[board].core]):
        params += [layer.params] + [decl.fields for decl in layer.decls if isinstance(decl.fields, dict)]
    return params


def kernels_chosen(result, board: str) -> set[str]:
    """What lowering chose for the layers and stages of a compiled model on the board's
    kernels: the row kernels of convolutions, and whether FULLY_CONNECTED and ADD got the
    constants of their fast paths."""
    chosen = set()
    for fields in lowered_params(result, board):
        if "kernel" in fields:
            chosen.add(fields["kernel"].name)
        elif "staged_input" in fields:
            chosen.add("FULLY_CONNECTED_STAGED" if fields["staged_input"] is not None else "FULLY_CONNECTED_PORTABLE")
        elif "input_tables" in fields:
            chosen.add("ADD_TABLES" if fields["input_tables"] is not None else "ADD")
    return chosen


def test_every_fast_path_model_names_its_kernel():
    assert sorted(FAST_PATH_KERNELS) == sorted(model_zoo.FAST_PATH_OPS)


@needs_toolchain
@pytest.mark.parametrize("board", [M4, M55])
@pytest.mark.parametrize("name", sorted(model_zoo.FAST_PATH_OPS))
def test_simd_fast_paths_are_bit_exact(name, board, tmp_path):
    path = model_zoo.fast_path_model(name)
    result = compile_model(path, Options(target=BOARDS[board].core))
    kernel = FAST_PATH_KERNELS[name][board == M55]
    assert kernel in kernels_chosen(result, board), "not the kernel the test is for"
    if kernel in KERNEL_NAMES:  # the stage's params and comment name it
        assert f"kernel {kernel} */" in result.files["mnv2_model.c"]
    elif kernel.startswith("FULLY_CONNECTED"):  # the layer's comment names it
        assert f"kernel: {kernel} */" in result.files["mnv2_model.c"]
    write_files(result.files, tmp_path)
    report = run_on_board(path, result, tmp_path, BOARDS[board], count=6, seed=3, per_layer=False)
    assert report.bit_exact, f"{name}: {report.matched}/{report.inputs}"


# FULLY_CONNECTED_STAGED's tails on the M4 (model_zoo.FC_TAILS), and the portable kernel the
# DSP build keeps for a depth not in words.
@needs_toolchain
@pytest.mark.parametrize("name, kernel", [("fc_rows2_d36_u7", "FULLY_CONNECTED_STAGED"),
                                          ("fc_d20_u8", "FULLY_CONNECTED_STAGED"),
                                          ("fc_d30_u6", "FULLY_CONNECTED_PORTABLE")])
def test_fully_connected_tails_are_bit_exact_on_the_dsp_kernels(name, kernel, tmp_path):
    path = model_zoo.fc_tail_model(name)
    result = compile_model(path, Options(target=BOARDS[M4].core))
    assert kernels_chosen(result, M4) == {kernel}
    assert f"kernel: {kernel} */" in result.files["mnv2_model.c"]
    fc = next(op for op in result.plan.steps if op.op_name == "FULLY_CONNECTED")
    depth = fc.weights.shape[1]
    scratch = result.plan.scratch(fc)
    # STAGED's scratch: one row of input as SMLAD pairs, two bytes per input byte
    assert (scratch.nbytes if scratch is not None else 0) == (2 * depth if kernel.endswith("STAGED") else 0)
    write_files(result.files, tmp_path)
    report = run_on_board(path, result, tmp_path, BOARDS[M4], count=6, seed=3, per_layer=False)
    assert report.bit_exact, f"{name}: {report.matched}/{report.inputs}"


# The same kernels where the activation clamps inside int8 (their other instance): the
# converter makes full-range outputs for RELU6, so the output's zero point is moved to 0,
# which puts act_min at 0; TFLite computes the edited model as it is.
@needs_toolchain
@pytest.mark.parametrize("board", [M4, M55])
@pytest.mark.parametrize("name", ["dw3_s1_same_c12", "dw3_s2_valid_c16", "dw5_s1_same_c8", "pw_c16_s1",
                                  "pw_c24_o10_s2", "conv3_s2_same_c3"])
def test_simd_fast_paths_clamp_like_tflite(name, board, tmp_path):
    model = tflite_edit.load(model_zoo.fast_path_model(name))
    graph = model.subgraphs[0]
    graph.tensors[graph.outputs[0]].quant.zero_point = [0]
    path = tflite_edit.save(model, tmp_path / f"{name}_clamped.tflite")
    result = compile_model(path, Options(target=BOARDS[board].core))
    assert any(fields.get("act_min") == 0 for fields in lowered_params(result, board))
    write_files(result.files, tmp_path / "c")
    report = run_on_board(path, result, tmp_path / "c", BOARDS[board], count=6, seed=5, per_layer=False)
    assert report.bit_exact, f"{name}: {report.matched}/{report.inputs}"
