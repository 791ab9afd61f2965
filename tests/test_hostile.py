"""Malformed and hostile models: each problem is refused with its own clear message.

Every model here is a real fixture rewritten with `tflite_edit` (read into plain Python,
one field changed, serialized again), so each test breaks exactly one thing.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import model_zoo
from conftest import require_tools
import tflite_edit
from mnv2gen.targets import C_WARNINGS
from mnv2gen.cli import main


def load(kind: str) -> tflite_edit.Model:
    return tflite_edit.load(model_zoo.single_op_model(kind, 0))


def compile_error(model: tflite_edit.Model, tmp_path, capsys, name: str = "bad.tflite") -> str:
    """Compile in-process; assert exit code 2 and a one-line message, and return it."""
    path = tflite_edit.save(model, tmp_path / name)
    code = main(["compile", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    message = capsys.readouterr().err
    assert code == 2, message
    assert message.startswith("mnv2gen: error: ") and message.count("\n") == 1, message
    assert str(path) in message  # names the file
    return message


def assert_refused(model, tmp_path, capsys, *fragments: str) -> str:
    message = compile_error(model, tmp_path, capsys)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------- indices


def test_op_input_index_out_of_range(tmp_path, capsys):
    m = load("conv")
    m.graph.operators[0].inputs[0] = 99
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "input tensor index 99", "4 tensors")


def test_op_output_index_negative(tmp_path, capsys):
    m = load("conv")
    m.graph.operators[0].outputs[0] = -1
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "output tensor index -1")


def test_graph_output_index_out_of_range(tmp_path, capsys):
    m = load("conv")
    m.graph.outputs = [7]
    assert_refused(m, tmp_path, capsys, "graph output index 7", "0..3")


def test_opcode_index_out_of_range(tmp_path, capsys):
    m = load("conv")
    m.graph.operators[0].opcode_index = 5
    assert_refused(m, tmp_path, capsys, "op 0", "operator code 5")


def test_buffer_index_out_of_range(tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[2].buffer = 999
    assert_refused(m, tmp_path, capsys, "tensor 2", "buffer 999", "buffers")


# ------------------------------------------------------------------------- buffers


def test_buffer_shorter_than_its_shape(tmp_path, capsys):
    m = load("conv")
    weights = m.graph.tensors[2]
    m.buffers[weights.buffer] = m.buffers[weights.buffer][:-1]
    assert_refused(m, tmp_path, capsys, "tensor 2", "[14, 5, 5, 1] of int8 (350 bytes)", "holds 349 bytes")


def test_bias_buffer_of_the_wrong_type(tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[1].type = 9  # int8: 14 values need 14 bytes, the buffer holds 56
    assert_refused(m, tmp_path, capsys, "tensor 1", "holds 56 bytes")


# ------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", model_zoo.SINGLE_OP_KINDS)
def test_output_shape_inconsistent_with_the_op(kind, tmp_path, capsys):
    """Every op kind checks its output shape (the last op's output gets a wrong last dim)."""
    m = load(kind)
    out = m.graph.tensors[m.graph.outputs[0]]
    out.shape = [*out.shape[:-1], out.shape[-1] + 1]
    message = compile_error(m, tmp_path, capsys)
    assert re.search(r"shape|element counts|values for", message), message
    assert "op " in message


def test_shape_dimension_products_do_not_wrap(tmp_path, capsys):
    """[1] + [65536]*4 is 2**64 elements: a wrapping int64 product would call it 0 bytes."""
    m = load("softmax")
    for t in m.graph.tensors:
        t.shape = [1, 65536, 65536, 65536, 65536]
    assert_refused(m, tmp_path, capsys, "tensor 0", "bytes", "cannot be addressed")


# ------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("scale", [0.0, -0.5, math.nan, math.inf])
def test_bad_scale(scale, tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[0].quant.scale = [scale]
    assert_refused(m, tmp_path, capsys, "tensor 0", f"quantization scale {scale}", "finite and > 0")


def test_per_channel_scale_count_mismatch(tmp_path, capsys):
    m = load("conv")
    q = m.graph.tensors[2].quant
    q.scale, q.zero_point = q.scale[:-1], q.zero_point[:-1]
    assert_refused(m, tmp_path, capsys, "tensor 2", "13 per-channel scales on axis 0", "[14, 5, 5, 1]")


def test_zero_point_count_mismatch(tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[2].quant.zero_point = [0, 0]
    assert_refused(m, tmp_path, capsys, "tensor 2", "14 scales but 2 zero points")


@pytest.mark.parametrize("zero_point", [200, -129])
def test_zero_point_out_of_range(zero_point, tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[0].quant.zero_point = [zero_point]
    assert_refused(m, tmp_path, capsys, "tensor 0", f"zero point {zero_point}", "-128..127")


def test_per_channel_activation(tmp_path, capsys):
    m = load("conv")
    m.graph.tensors[3].quant = tflite_edit.Quant([0.1] * 14, [0] * 14, axis=3)
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "per channel", "per tensor")


def test_rescale_too_large_for_the_fixed_point_shift(tmp_path, capsys):
    """input*weight/output scale of ~1e30 needs a shift no int32 kernel can do."""
    m = load("conv")
    m.graph.tensors[3].quant.scale = [1e-36]
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "rescale", "output scale")


# ------------------------------------------------------------------------- int32 arithmetic


def test_accumulator_that_can_overflow_int32(tmp_path, capsys):
    """A fully connected layer of depth 70,000 with |w| = 127 can sum past 2**31."""
    m = load("fc")
    depth = 70_000
    x, w = m.graph.tensors[0], m.graph.tensors[3]
    x.shape, w.shape = [1, depth], [4, depth]
    m.buffers[w.buffer] = np.full(4 * depth, 127, dtype=np.int8).tobytes()
    m.graph.tensors[4].shape = [1, 4]
    m.graph.tensors[5].shape = [1, 4]
    assert_refused(m, tmp_path, capsys, "op 0 (FULLY_CONNECTED)", "int32 accumulator", "overflow")


def test_activations_too_large_for_a_microcontroller(tmp_path, capsys):
    m = load("softmax")
    for t in m.graph.tensors:
        t.shape = [1, 10_000, 10_000]
    assert_refused(m, tmp_path, capsys, "activation", "bytes", "microcontroller")


def test_mean_whose_int32_sum_could_overflow(tmp_path, capsys):
    m = load("mean")
    m.graph.tensors[0].shape = [1, 4096, 4096, 1]  # 16 Mi values of up to 255 in an int32 sum
    m.graph.tensors[2].shape = [1, 1, 1, 1]
    assert_refused(m, tmp_path, capsys, "op 0 (MEAN)", "4096x4096", "int32 sum")


def test_weights_too_large_for_a_microcontroller(tmp_path, capsys):
    m = load("fc")
    w = m.graph.tensors[3]
    w.shape = [4, 1000, 17_000]
    m.buffers[w.buffer] = bytes(4 * 1000 * 17_000)
    assert_refused(m, tmp_path, capsys, "constant (weight) tensors total 68,000,", "limit of 67,108,864")


# ------------------------------------------------------------------------- graph structure


def test_op_reading_its_own_output_is_a_cycle(tmp_path, capsys):
    m = load("conv")
    m.graph.operators[0].inputs[0] = 3
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "its own output", "cycle")


def test_op_reading_a_later_ops_output(tmp_path, capsys):
    m = load("add")  # CONV_2D -> ADD; make the conv read the ADD's output
    m.graph.operators[0].inputs[0] = 4
    assert_refused(m, tmp_path, capsys, "op 0 (CONV_2D)", "produced by op 1 (ADD)", "cycle")


def test_tensor_written_by_two_ops(tmp_path, capsys):
    m = load("add")
    m.graph.operators[1].outputs = [3]
    assert_refused(m, tmp_path, capsys, "tensor 3", "ops 0 (CONV_2D) and 1 (ADD)")


def test_graph_input_written_by_an_op(tmp_path, capsys):
    m = load("conv")
    m.graph.operators[0].outputs = [0]
    assert_refused(m, tmp_path, capsys, "graph input", "op 0 (CONV_2D)")


def test_several_subgraphs(tmp_path, capsys):
    m = load("conv")
    m.subgraphs.append(m.copy().graph)
    assert_refused(m, tmp_path, capsys, "2 subgraphs", "single-graph")


def test_no_operators(tmp_path, capsys):
    m = load("conv")
    m.graph.operators = []
    assert_refused(m, tmp_path, capsys, "never produced")


# ------------------------------------------------------------------------- nothing injected

HOSTILE = "evil */ #include <evil.h>\n#define X 1 \\\n ??/ \u00e9\u202e /*"
STRICT = list(C_WARNINGS)


def hostile_model(kind: str = "add") -> tflite_edit.Model:
    m = load(kind)
    for t in m.graph.tensors:
        t.name = HOSTILE.encode()
    m.graph.name = HOSTILE.encode()
    m.description = HOSTILE.encode()
    return m


def assert_clean_c(out):
    """ASCII only, no line splice or trigraph, and every .c builds with -Werror and trigraphs
    on (which also catches a comment closed early or a `/*` inside one, through -Wcomment, and
    a `??/` splice through -Wtrigraphs); the preprocessor output holds nothing of the model's
    strings (what a comment holds is dead text)."""
    import subprocess

    for path in sorted(out.iterdir()):
        data = path.read_bytes()
        assert data.isascii(), path.name
        for fragment in ["\\\n", "\u00e9", "??/"]:
            assert fragment not in data.decode(), (path.name, fragment)
    require_tools("gcc")
    for source in sorted(out.glob("*.c")):
        subprocess.run(["gcc", *STRICT, "-trigraphs", "-Wtrigraphs", "-c", str(source), "-I", str(out),
                        "-o", str(source.with_suffix(".o"))], check=True)
        source.with_suffix(".o").unlink()
        expanded = subprocess.run(["gcc", "-E", "-P", "-I", str(out), str(source)], check=True,
                                  capture_output=True, text=True).stdout
        assert "evil" not in expanded and "#define X" not in expanded, source.name


def test_hostile_tensor_and_graph_names_never_reach_the_c(tmp_path):
    path = tflite_edit.save(hostile_model(), tmp_path / "model.tflite")
    assert main(["compile", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert_clean_c(tmp_path / "out")
    generated = "".join(p.read_text() for p in (tmp_path / "out").iterdir())
    assert "evil" not in generated  # names are not used at all: symbols come from layer numbers


def test_hostile_file_name_is_sanitized_in_the_banner(tmp_path):
    import subprocess
    import sys

    name = "m * #include <evil.h>\n\\ \u00e9.tflite"  # no '/': it would be a folder
    path = tmp_path / name
    path.write_bytes(model_zoo.single_op_model("conv", 0).read_bytes())
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(path), "--out", str(out),
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_clean_c(out)
    banner = (out / "mnv2_model.c").read_text().split("*/", 1)[0]
    assert "Model: m * #include <evil.h>?/ ?.tflite" in banner  # readable, and nothing dangerous


@pytest.mark.parametrize("name, shown", [
    ("a??-.tflite", "a? ?-.tflite"),  # a trigraph (for ~)
    ("a\\.tflite", "a/.tflite"),  # a backslash (a line splice before a newline)
    ("my model (v2) #3, 96x96.tflite", "my model (v2) #3, 96x96.tflite"),  # readable as it is
])
def test_model_file_names_stay_readable_in_the_banner(tmp_path, name, shown):
    path = tmp_path / name
    path.write_bytes(model_zoo.single_op_model("conv", 0).read_bytes())
    out = tmp_path / "out"
    assert main(["compile", str(path), "--out", str(out), "--quiet"]) == 0
    assert f"Model: {shown} (sha256" in (out / "mnv2_model.c").read_text()
    assert_clean_c(out)


@pytest.mark.parametrize("text, shown", [
    ("a*/b", "a* /b"), ("a/*b", "a/ *b"), ("*/*/", "* / * /"), ("???/", "? ? ?/"), ("a\\", "a/"),
    ("x\ny\x1b", "x?y?"), ("caf\u00e9", "caf?"), ("#include <x.h> & 'quotes'", "#include <x.h> & 'quotes'"),
])
def test_comment_text_neutralizes_only_what_is_dangerous_in_a_comment(text, shown):
    from mnv2gen.codegen.render import comment_text

    assert comment_text(text) == shown


def test_hostile_file_name_in_an_error_stays_on_one_line(tmp_path, capsys):
    path = tmp_path / "bad\n\x1b[31mname.tflite"
    path.write_bytes(b"not a model at all, but long enough")
    assert main(["compile", str(path), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "\x1b" not in message and "TFL3" in message


def test_hostile_custom_op_name_in_an_error_stays_on_one_line(tmp_path, capsys):
    m = load("conv")
    m.operator_codes[0] = tflite_edit.OperatorCode(32, 32, b"Evil\n\x1b[2J", 1)  # CUSTOM
    message = compile_error(m, tmp_path, capsys)
    assert "CUSTOM(Evil??[2J)" in message and "\x1b" not in message


# ------------------------------------------------------------------------- found by fuzzing


def test_scalar_softmax(tmp_path, capsys):
    """bench/fuzz_frontend.py case 5488: a SOFTMAX on a 0-d tensor crashed the lowering."""
    m = load("softmax")
    for t in m.graph.tensors:
        t.shape = []
    assert_refused(m, tmp_path, capsys, "op 0 (SOFTMAX)", "scalar", "at least one dimension")


def test_softmax_scale_tflite_cannot_handle(tmp_path, capsys):
    """beta * scale * 2**26 <= 1 crashed the exp-table builder; TFLite aborts on it (see
    test_degenerate.py, which checks that against TFLite)."""
    m = load("softmax")
    m.graph.tensors[0].quant.scale = [1e-9]
    assert_refused(m, tmp_path, capsys, "op 0 (SOFTMAX)", "below 2**-26", "TFLite")
