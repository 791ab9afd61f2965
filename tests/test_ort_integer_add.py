"""QLinearAdd on cores without an FPU (the Cortex-M0+): ort_add_s8's integer form
(mnv2gen/ort_integer_add.py) against ONNX Runtime itself on all 65,536 input pairs, for scale
sets whose second fused multiply-add meets exact ties, uint8 and int8; the compile-time proof
catching a wrong form and refusing a layer it cannot prove."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnx_zoo
from mnv2gen import ort_integer_add
from mnv2gen.codegen.lower_ort import fmaf
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.targets import C_FLOAT_FLAGS, C_WARNINGS
from mnv2gen.verification.harness import find_compiler

PAIRS = 65536
# (a_scale, a_zp, b_scale, b_zp, y_scale, y_zp, element type): powers of two make the sums
# land on exact halves (ties for RNE, and for fl() in the second fused multiply-add);
# the others are scales as a quantizer picks them.
SCALE_SETS = [
    (0.5, 3, 0.25, -7, 1.0, 1, "int8"),
    (2.0**-7, 128, 2.0**-8, 120, 2.0**-6, 131, "uint8"),
    (0.0235294, 130, 0.0156863, 121, 0.0313725, 127, "uint8"),
    (0.0123, -5, 0.0456, 17, 0.0389, -2, "int8"),
    (1e-4, 0, 0.3, 0, 0.002, -128, "int8"),
]


def _dtype(element: str):
    return np.uint8 if element == "uint8" else np.int8


def _ort_outputs(scale_set) -> np.ndarray:
    """ONNX Runtime's QLinearAdd of stored values a = byte i >> 8, b = byte i (as the C
    indexes them) for i < 65,536: the stored outputs."""
    import onnxruntime

    a_scale, a_zp, b_scale, b_zp, y_scale, y_zp, element = scale_set
    dtype = _dtype(element)
    kind = TensorProto.UINT8 if element == "uint8" else TensorProto.INT8
    consts = [helper.make_tensor(name, TensorProto.FLOAT, [], [value])
              for name, value in (("as", a_scale), ("bs", b_scale), ("ys", y_scale))]
    consts += [helper.make_tensor(name, kind, [], [value])
               for name, value in (("az", a_zp), ("bz", b_zp), ("yz", y_zp))]
    node = helper.make_node("QLinearAdd", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "add", [helper.make_tensor_value_info(n, kind, [PAIRS]) for n in "ab"],
                              [helper.make_tensor_value_info("y", kind, [PAIRS])], consts)
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = _c_bytes()
    offset = 128 if element == "uint8" else 0
    feeds = {name: (values.astype(np.int64) + offset).astype(dtype) for name, values in (("a", a), ("b", b))}
    return session.run(None, feeds)[0]


def _c_bytes():
    i = np.arange(PAIRS)
    return (i >> 8).astype(np.uint8).view(np.int8), (i & 255).astype(np.uint8).view(np.int8)


def _constants(scale_set):
    """ort_add_s8's float32 constants as lower_ort._add_fields computes them."""
    a_scale, a_zp, b_scale, b_zp, y_scale, y_zp, element = scale_set
    a_ratio = np.float32(np.float32(a_scale) / np.float32(y_scale))
    b_ratio = np.float32(np.float32(b_scale) / np.float32(y_scale))
    bias = np.float32(np.float32(y_zp) - fmaf(a_ratio, np.float32(a_zp), np.float32(b_ratio * np.float32(b_zp))))
    return a_ratio, b_ratio, bias, 128 if element == "uint8" else 0


@pytest.fixture(scope="module")
def kernels_c(tmp_path_factory):
    """The Cortex-M0+'s generated kernels (with ort_add_s8's integer form)."""
    result = compile_model(onnx_zoo.single_op("add", "int8"), Options(target="cortex-m0plus", quantized_input=True))
    directory = tmp_path_factory.mktemp("m0plus_add")
    write_files(result.files, directory)
    assert "ort_add_rounded" in result.files["mnv2_kernels.c"]
    return directory


def _harness(scale_sets, qemu: bool) -> str:
    """A main() running ort_add_s8 on every pair for each scale set, writing the bytes out
    (to stdout on the host, to output.bin through semihosting under QEMU)."""
    lines = ['#include "mnv2_kernels.h"', '#include "semihost.h"' if qemu else "#include <stdio.h>",
             "static int8_t a[65536], b[65536], out[65536];"]
    params = []
    for k, scale_set in enumerate(scale_sets):
        a_ratio, b_ratio, bias, offset = _constants(scale_set)
        a_terms, b_terms, failure = ort_integer_add.proven_terms(a_ratio, b_ratio, bias, offset)
        assert failure is None, scale_set
        for name, terms in (("a", a_terms), ("b", b_terms)):
            lines.append(f"static const int64_t {name}{k}[256] = {{{', '.join(f'{v}LL' for v in terms.tolist())}}};")
        params.append(f"{{{PAIRS}, {offset}, a{k}, b{k}, {-128 + offset}, {127 + offset}}}")
    write = ("if (!semihost_write(file, out, sizeof out)) {\n            return 1;\n        }" if qemu
             else "fwrite(out, 1, sizeof out, stdout);")
    lines += [f"static const mnv2_ort_add_params params[] = {{{', '.join(params)}}};",
              "int main(void)", "{",
              "    int32_t i, k;",
              *(["    const int32_t file = semihost_open(\"output.bin\", SEMIHOST_MODE_WRITE_BINARY);",
                 "    if (file < 0) {", "        return 1;", "    }"] if qemu else []),
              "    for (i = 0; i < 65536; ++i) {", "        a[i] = (int8_t)(uint8_t)(i >> 8);",
              "        b[i] = (int8_t)(uint8_t)i;", "    }",
              f"    for (k = 0; k < {len(scale_sets)}; ++k) {{", "        mnv2_ort_add_s8(&params[k], a, b, out);",
              f"        {write}", "    }",
              *(["    semihost_close(file);"] if qemu else []), "    return 0;", "}"]
    return "\n".join(lines) + "\n"


def _assert_equal_to_onnx_runtime(output: np.ndarray, scale_sets) -> None:
    assert output.size == len(scale_sets) * PAIRS
    for k, scale_set in enumerate(scale_sets):
        theirs = _ort_outputs(scale_set)
        offset = _constants(scale_set)[3]
        ours = (output[k * PAIRS:(k + 1) * PAIRS].astype(np.int64) + offset).astype(theirs.dtype)
        assert np.array_equal(ours, theirs), (scale_set, np.flatnonzero(ours != theirs)[:5])
        assert len(np.unique(theirs)) > 20


def test_integer_add_on_every_pair_on_the_host(kernels_c):
    """The Cortex-M0+'s ort_add_s8, built on the host, equals ONNX Runtime on all 65,536 pairs
    of each scale set (test_the_scale_sets_meet_ties: the ties are there)."""
    (kernels_c / "host_pairs.c").write_text(_harness(SCALE_SETS, qemu=False))
    binary = kernels_c / "host_pairs"
    subprocess.run([find_compiler("gcc"), "-O2", *C_WARNINGS, *C_FLOAT_FLAGS, "-I", str(kernels_c),
                    str(kernels_c / "host_pairs.c"), str(kernels_c / "mnv2_kernels.c"), "-o", str(binary), "-lm"],
                   check=True)
    output = np.frombuffer(subprocess.run([str(binary)], check=True, capture_output=True).stdout, np.int8)
    _assert_equal_to_onnx_runtime(output, SCALE_SETS)


def test_integer_add_on_every_pair_under_qemu(kernels_c, tmp_path):
    """The same C built for the Armv6-M image (mps2-an385: its int64 steps as the M0+ runs
    them), the set meeting fl()'s ties and the uint8 powers of two: equal to ONNX Runtime."""
    from conftest import require_tools
    from mnv2gen.firmware.boards import BOARDS
    from mnv2gen.firmware.build import build_program, tool
    from test_firmware import TOOLS

    require_tools(*TOOLS)
    sets = [SCALE_SETS[1], SCALE_SETS[2]]
    (tmp_path / "qemu_pairs.c").write_text(_harness(sets, qemu=True))
    board = BOARDS["mps2-an385"]
    elf = build_program([tmp_path / "qemu_pairs.c", kernels_c / "mnv2_kernels.c"], kernels_c, board, tmp_path)
    subprocess.run([tool("qemu-system-arm"), "-M", board.machine, "-nographic", "-semihosting-config",
                    "enable=on,target=native", "-kernel", str(elf)], cwd=tmp_path, check=True, timeout=120,
                   capture_output=True)
    _assert_equal_to_onnx_runtime(np.fromfile(tmp_path / "output.bin", np.int8), sets)


def _tie_counts(scale_set) -> tuple[int, int, int]:
    """Over all pairs, the outer sum x (exact): (x exactly n + 0.5: RNE's ties; x not a half
    but fl(x) is one, |x| < 256: where fl() decides; x midway between two float32s: fl()'s ties)."""
    a_ratio, b_ratio, bias, offset = _constants(scale_set)
    units, exact, rounded = ort_integer_add.UNITS, ort_integer_add._exact, ort_integer_add._round_significant
    values = ort_integer_add.stored_values(offset).tolist()
    inner = [rounded(b * exact(b_ratio) + exact(bias)) for b in values]
    one, half = 1 << units, 1 << (units - 1)
    ties = lands = float_ties = 0
    for a in values:
        for t in inner:
            x = a * exact(a_ratio) + t
            magnitude, dropped = abs(x), abs(x).bit_length() - 24
            ties += magnitude % one == half
            lands += magnitude % one != half and abs(rounded(x)) % one == half and magnitude >> units < 256
            float_ties += dropped > 0 and magnitude & ((1 << dropped) - 1) == 1 << (dropped - 1)
    return ties, lands, float_ties


def test_the_scale_sets_meet_ties():
    """The sets meet RNE's ties (powers of two), sums fl() moves onto a half, and fl()'s own
    ties (a quantizer's scales)."""
    assert [count > 1000 for count in _tie_counts(SCALE_SETS[0])] == [True, False, False]
    assert [count > 1000 for count in _tie_counts(SCALE_SETS[1])] == [True, False, False]
    ties, lands, float_ties = _tie_counts(SCALE_SETS[2])
    assert ties > 0 and lands > 400 and float_ties > 700


def test_the_proof_catches_a_wrong_form_and_refuses(monkeypatch):
    """A form that rounds ties up (not to even) fails the proof, naming a pair; the scale set
    is one with ties."""
    a_ratio, b_ratio, bias, offset = _constants(SCALE_SETS[0])
    ort_integer_add._proven_terms.cache_clear()
    right = ort_integer_add.integer_outputs

    def ties_up(a_terms, b_terms, offset):
        total = a_terms[:, None] + b_terms[None, :]
        return np.clip((total + (1 << 31)) >> 32, -128 + offset, 127 + offset)

    monkeypatch.setattr(ort_integer_add, "integer_outputs", ties_up)
    assert ort_integer_add.proven_terms(a_ratio, b_ratio, bias, offset)[2] is not None
    monkeypatch.setattr(ort_integer_add, "integer_outputs", right)
    ort_integer_add._proven_terms.cache_clear()
    assert ort_integer_add.proven_terms(a_ratio, b_ratio, bias, offset)[2] is None


def test_an_add_without_integer_form_refuses_the_target(tmp_path):
    """The add fixture with its convolution's output scale times 2^24 (QLinearAdd's a_ratio
    about 1.4e7: a term beyond int64's reach): compiling for the Cortex-M0+ stops with one line
    naming the node and what to do; the Cortex-M4 compiles it."""
    from onnx import numpy_helper

    from test_cli import assert_user_error, run_cli

    model = onnx.load(onnx_zoo.single_op("add", "int8"))
    add = next(node for node in model.graph.node if node.op_type == "QLinearAdd")
    scale = next(init for init in model.graph.initializer if init.name == add.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(2.0**24), scale.name))
    path = tmp_path / "huge_ratio.onnx"
    onnx.save(model, path)
    result = run_cli("compile", str(path), "--out", str(tmp_path / "c"), "--target", "cortex-m0plus",
                     "--quantized-input")
    assert_user_error(result, "(QLinearAdd, output tensor", "no integer form proven equal", "int64's reach",
                      "--target cortex-m4")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "fmaf" in compile_model(path, Options(target="cortex-m4", quantized_input=True)).files["mnv2_kernels.c"]
