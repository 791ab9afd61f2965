"""The compile does its work once, and its types catch misspellings instead of defaulting."""

from __future__ import annotations

import json

import pytest

import model_zoo
from mnv2gen import ir
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model
from mnv2gen.frontend.flatbuffer import RawOp
from mnv2gen.passes import OptimizeLevel
from mnv2gen.presentation.memory import memory_report

FLAGSHIP = "mnv2_a035_96_c1000"


def test_a_compile_verifies_the_graph_once_per_pass_boundary(monkeypatch):
    calls = []
    verify = ir.Graph.verify
    monkeypatch.setattr(ir.Graph, "verify", lambda graph: calls.append(graph) or verify(graph))
    compile_model(model_zoo.get_model(FLAGSHIP))
    # The frontend's, then fold_pad, chain_tables, wrap_layers, fuse_bottlenecks, fuse_neighbours.
    assert len(calls) == 6


def test_the_memory_report_renders_no_c(monkeypatch):
    monkeypatch.setattr("mnv2gen.compiler.render", lambda *a: pytest.fail("rendered C"))
    report = memory_report(model_zoo.get_model(FLAGSHIP), Options(), with_tflm=False)
    assert report.paper_bound_bytes == 64_512
    assert [s.optimize for s in report.schedules] == ["memory", "balanced", "speed"]


@pytest.mark.parametrize("field, value", [("target", "cortex-m44"), ("reference", "tflm "),
                                          ("optimize", "memroy")])
def test_options_refuse_a_misspelt_name(field, value):
    with pytest.raises(ValueError):
        Options(**{field: value})


def test_options_take_the_optimize_level_by_name():
    assert Options(optimize="speed").optimize is OptimizeLevel.SPEED


def test_a_misspelt_option_getter_raises_instead_of_reading_the_default():
    op = RawOp(index=0, name="CONV_2D", inputs=[], outputs=[], options={})
    assert op.option("StrideH", 1) == 1  # no options table: the schema's default
    with pytest.raises(KeyError):
        op.option("StrideHeight", 1)


def test_dtypes_are_their_names_in_json_and_comparisons():
    tensor = ir.Tensor(name="x", shape=(1,), dtype="int8")
    assert tensor.dtype is ir.DType.INT8 and tensor.dtype == "int8"
    assert json.dumps({"dtype": tensor.dtype}) == '{"dtype": "int8"}'
    assert f"{tensor.dtype}" == "int8" and tensor.ctype == "int8_t" and tensor.itemsize == 1
