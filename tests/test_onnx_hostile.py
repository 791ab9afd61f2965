"""Hostile and unsupported ONNX files: each refused by `compile` in one line, exit 2, no
traceback; names from the file never reach the C; the ONNX C's build checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnx_zoo
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.verification.harness import find_compiler


def _compile(path, out, *flags) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnv2gen.cli", "compile", str(path), "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=300)


def _assert_refused(path, out, expected: str, *flags) -> str:
    result = _compile(path, out, *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr
    return lines[0]


def _model() -> onnx.ModelProto:
    return onnx.load(onnx_zoo.single_op("conv", "uint8"))


def _conv_node(model):
    return next(n for n in model.graph.node if n.op_type == "QLinearConv")


def _set_attribute(model, name, value):
    node = _conv_node(model)
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return model


def _replace_initializer(model, name, array):
    index = next(i for i, t in enumerate(model.graph.initializer) if t.name == name)
    model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, name))
    return model


def _float_weights(model):
    weights = _conv_node(model).input[3]
    array = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == weights))
    return _replace_initializer(model, weights, array.astype(np.float32))


def _nonzero_weight_zero_point(model):
    name = _conv_node(model).input[5]
    array = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))
    return _replace_initializer(model, name, np.ones_like(array))


def _external_data(model):
    tensor = next(t for t in model.graph.initializer if t.name == _conv_node(model).input[3])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")
    return model


def _old_opset(model):
    model.opset_import[0].version = 12
    return model


def _unsupported_op_named_hostile(model):
    node = model.graph.node[1]
    node.op_type, node.name = "Relu", "evil */ name\n#include <stdio.h>"
    return model


def _qdq_bias_scale_off_by_one_ulp(_):
    model = onnx.load(onnx_zoo.single_op("conv", "uint8", qdq=True))
    bias_dequantize = next(n for n in model.graph.node if n.op_type == "DequantizeLinear"
                           and numpy_helper.to_array(next((t for t in model.graph.initializer if t.name == n.input[0]),
                                                          numpy_helper.from_array(np.zeros(1, np.int8)))).dtype == np.int32)
    scale = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == bias_dequantize.input[1]))
    return _replace_initializer(model, bias_dequantize.input[1], np.nextafter(scale, np.float32(1)).astype(np.float32))


def _qdq_float_op_left(_):
    model = onnx.load(onnx_zoo.single_op("conv", "uint8", qdq=True))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    relu = helper.make_node("Relu", [conv.output[0]], ["relu_out"], name="relu")
    for node in model.graph.node:  # the QuantizeLinear after the Conv now reads the Relu
        node.input[:] = ["relu_out" if name == conv.output[0] else name for name in node.input]
    model.graph.node.insert(list(model.graph.node).index(conv) + 1, relu)
    return model


def _dynamo_head(qdq: bool = False) -> onnx.ModelProto:
    return onnx.load(onnx_zoo.single_op("reduce_mean", "int8", qdq=qdq))


def _mean_over_channels(_):
    model = _dynamo_head()
    axes = next(n for n in model.graph.node if n.op_type == "ReduceMean").input[1]
    return _replace_initializer(model, axes, np.array([1, 2], np.int64))


def _reshape_to_columns(_):
    model = _dynamo_head(qdq=True)
    shape = next(n for n in model.graph.node if n.op_type == "Reshape").input[1]
    return _replace_initializer(model, shape, np.array([-1, 1], np.int64))


def _fused_node_in_the_file(_):
    """The name mnv2gen gives a fused head, written into a file: refused, not read as one."""
    model = _dynamo_head()
    node = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    node.op_type, node.domain = "DequantizeReduceMeanQuantize", "mnv2gen.fused"
    return model


def _overflowing_scale(model):
    return _replace_initializer(model, _conv_node(model).input[6], np.float32(1e-45))


MUTATIONS = {
    "overflowing scale": (_overflowing_scale, "not a finite float32"),
    "qdq bias scale": (_qdq_bias_scale_off_by_one_ulp, "bias scale is not x_scale * w_scale"),
    "qdq float op": (_qdq_float_op_left, "not quantized by exactly one QuantizeLinear"),
    "strides 0": (lambda m: _set_attribute(m, "strides", [0, 0]), "strides"),
    "dilations 2": (lambda m: _set_attribute(m, "dilations", [2, 2]), "dilations"),
    "negative pads": (lambda m: _set_attribute(m, "pads", [-1, 0, 0, 0]), "pads"),
    "group 3": (lambda m: _set_attribute(m, "group", 3), "group 3"),
    "auto_pad": (lambda m: _set_attribute(m, "auto_pad", "SAME_UPPER"), "auto_pad"),
    "float weights": (_float_weights, "the weights is float32"),
    "weight zero point": (_nonzero_weight_zero_point, "zero points must be 0"),
    "external data": (_external_data, "external data"),
    "opset 12": (_old_opset, "opset 12"),
    "hostile name": (_unsupported_op_named_hostile, "op Relu is not supported"),
    "mean over channels": (_mean_over_channels, "over axes (2, 3)"),
    "reshape to columns": (_reshape_to_columns, "Reshape to the constant shape [1, -1]"),
    "fused node in the file": (_fused_node_in_the_file, "unknown operator domain mnv2gen.fused"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_hostile_models_are_refused_in_one_line(mutation, tmp_path):
    mutate, expected = MUTATIONS[mutation]
    path = tmp_path / "model.onnx"
    path.write_bytes(mutate(_model()).SerializeToString())
    line = _assert_refused(path, tmp_path / "out", expected)
    assert "node" in line or mutation in ("external data", "opset 12", "overflowing scale")


@pytest.mark.parametrize("cut", [1, 100, 0.5])
def test_truncated_files_are_refused(cut, tmp_path):
    data = onnx_zoo.single_op("conv", "int8").read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[:int(len(data) * cut) if cut < 1 else cut])
    _assert_refused(path, tmp_path / "out", "")


def _save_with_external_data(folder, location="model.onnx.data"):
    model = onnx.load(onnx_zoo.single_op("depthwise", "uint8"))
    folder.mkdir(exist_ok=True)
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return folder / "model.onnx"


def test_external_data_is_read_and_bit_exact(tmp_path):
    """torch's default exporter writes the weights to model.onnx.data beside the model."""
    from onnx_checks import assert_bit_exact_onnx

    path = _save_with_external_data(tmp_path / "model")
    stored = onnx.load(path, load_external_data=False).graph.initializer
    assert sum(t.data_location == onnx.TensorProto.EXTERNAL for t in stored) >= 3  # the weights among them
    assert_bit_exact_onnx(path, tmp_path / "out", count=10)


def test_constant_nodes_are_read_or_ignored(tmp_path):
    """The legacy exporter without quant_pre_process leaves unused Constant nodes, and torch's
    exporters may give a shape as a Constant node: the unused ones are ignored (even one that
    could not be read), the used one read, and the model is the same."""
    from mnv2gen.frontend import load_model

    def describe(path):
        return [(type(op), op.describe(), op.output.quant) for op in load_model(path).ops]

    path = onnx_zoo.single_op("reduce_mean", "uint8")
    model = onnx.load(path)
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    shape = next(t for t in model.graph.initializer if t.name == reshape.input[1])
    model.graph.initializer.remove(shape)
    model.graph.node.insert(0, helper.make_node("Constant", [], [reshape.input[1]], value=shape))
    for position, value in ((0, np.float32(1.5)), (3, np.zeros((2, 3), np.int64))):
        model.graph.node.insert(position, helper.make_node(
            "Constant", [], [f"unused_{position}"], value=numpy_helper.from_array(value)))
    model.graph.node.insert(2, helper.make_node("Constant", [], ["unused_string"], value_string="ignored"))
    edited = tmp_path / "constants.onnx"
    onnx.save(model, edited)
    assert sum(n.op_type == "Constant" for n in onnx.load(edited).graph.node) == 4
    assert describe(edited) == describe(path)


@pytest.mark.parametrize("edit", ["../escape.data", "/etc/passwd", "offset", "length"])
def test_hostile_external_data_is_refused(edit, tmp_path):
    path = _save_with_external_data(tmp_path / "model")
    model = onnx.load(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if edit.startswith(("/", "..")) and entry.key == "location":
            entry.value = edit
        elif entry.key == edit:
            entry.value = str(1 << 40)
    if edit in ("offset", "length") and not any(e.key == edit for e in tensor.external_data):
        tensor.external_data.add(key=edit, value=str(1 << 40))
    onnx.save(model, path)
    _assert_refused(path, tmp_path / "out", "external data")


def test_names_never_reach_the_c(tmp_path):
    model = _model()
    for node in model.graph.node:
        node.name = "*/ int evil; /* ??/"
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    result = compile_model(path)
    assert not any("evil" in text for text in result.files.values())


def test_cortex_m_targets_get_the_simd_kernels(tmp_path):
    """ONNX Runtime's arithmetic takes the target's SIMD kernels (the row kernel and the output
    stage named in each stage's comment): the DSP ones on the Cortex-M4, rounding on the FPU
    with VCVTR; Helium's on the Cortex-M55, rounding four lanes with VCVTN; or the portable
    ones if asked."""
    from mnv2gen.codegen.render import Options

    expected = {"cortex-m4": (("POINTWISE_STAGED", "DEPTHWISE_GROUPS"), "vcvtr.s32.f32"),
                "cortex-m55": (("POINTWISE_VECTORS", "DEPTHWISE_SIXTEENS"), "vcvtn.s32.f32")}
    for target, (kernels, rounding) in expected.items():
        files = compile_model(onnx_zoo.mobilenet_v2("uint8"), Options(target=target)).files
        for kernel in kernels:
            assert f"kernel {kernel}, output stage ORT_FLOAT32" in files["mnv2_model.c"]
        assert rounding in files["mnv2_kernels.c"] and "ort_add_s8" in files["mnv2_kernels.c"]
    files = compile_model(onnx_zoo.single_op("conv", "uint8"), Options(target="cortex-m4", kernels="ref")).files
    assert "__ARM_FEATURE_DSP" not in files["mnv2_model.c"] and "ort_conv_s8" in files["mnv2_kernels.c"]


def test_compile_imports_neither_onnxruntime_nor_torch(tmp_path):
    code = ("import sys; from mnv2gen.compiler import compile_model; "
            f"compile_model({str(onnx_zoo.single_op('add', 'uint8'))!r}); "
            "print(sorted(m for m in ('onnxruntime', 'torch', 'onnx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['onnx']"


def test_verify_json_names_onnx_runtime(tmp_path):
    import json

    result = subprocess.run([sys.executable, "-m", "mnv2gen.cli", "verify", str(onnx_zoo.single_op("gap", "uint8")),
                             "--out", str(tmp_path / "out"), "-n", "3", "--json"], capture_output=True, text=True)
    summary = json.loads(result.stdout)
    assert result.returncode == 0 and summary["bit_exact"] and summary["matched_onnxruntime"] == 5
    assert summary["reference"] == "onnxruntime" and "ONNX Runtime 1.31.1" in summary["oracle"]
    assert "matched_tflite" not in summary


def test_build_fragments_carry_the_float_flags(tmp_path):
    files = compile_model(onnx_zoo.single_op("conv", "int8")).files
    assert "-ffp-contract=off" in files["mnv2_model.mk"] and "-ffp-contract=off" in files["mnv2_model.cmake"]
    assert "-ffp-contract=off" in files["mnv2_README.md"]


PROBE_MAIN = """#include "mnv2_kernels.h"
#include <stdio.h>
int main(void) { printf("%d\\n", mnv2_ort_separate_roundings()); return 0; }
"""


def test_a_contracting_build_is_caught(tmp_path):
    """Built without -ffp-contract=off (and with FMA instructions to contract into), the C's
    probe sees the fused rounding, so run() refuses; with the flag it sees two roundings."""
    write_files(compile_model(onnx_zoo.single_op("add", "int8")).files, tmp_path)
    (tmp_path / "probe.c").write_text(PROBE_MAIN)
    verdicts = {}
    for contract in ("off", "fast"):
        binary = tmp_path / f"probe_{contract}"
        subprocess.run([find_compiler(None), "-O2", "-mfma", f"-ffp-contract={contract}", "-I", str(tmp_path),
                        str(tmp_path / "mnv2_kernels.c"), str(tmp_path / "probe.c"), "-o", str(binary), "-lm"],
                       check=True)
        verdicts[contract] = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.strip()
    assert verdicts == {"off": "1", "fast": "0"}


ROUNDING_MAIN = """#include "mnv2_model.h"
#include <fenv.h>
#include <stdio.h>
int main(void)
{
    static const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO, FE_TONEAREST};
    int i;
    for (i = 0; i < 4; ++i) {
        fesetround(modes[i]);
        printf("%d ", mnv2_run());
    }
    return 0;
}
"""


def test_a_changed_rounding_mode_is_caught(tmp_path):
    """run() refuses while the FPU rounds other than to nearest even (the output stage's
    roundings follow the mode: VCVTR on the cores, the magic addition in the portable C)."""
    write_files(compile_model(onnx_zoo.single_op("add", "int8")).files, tmp_path)
    (tmp_path / "main.c").write_text(ROUNDING_MAIN)
    binary = tmp_path / "rounding"
    subprocess.run([find_compiler(None), "-O2", "-ffp-contract=off", "-frounding-math", "-I", str(tmp_path),
                    *[str(tmp_path / f"mnv2_{name}.c") for name in ("model", "kernels", "weights")],
                    str(tmp_path / "main.c"), "-o", str(binary), "-lm"], check=True)
    printed = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    assert printed == ["8", "8", "8", "0"]  # MNV2_ERROR_FP_ROUNDING three times, then MNV2_OK
