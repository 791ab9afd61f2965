"""Checks of the fixture-model factory (tests/model_zoo.py).

The models are the ones the other tests use, so these checks cost little
beyond a cache look-up once the suite has built them.
"""

import collections
import sys
from pathlib import Path

import pytest

# Import model_zoo whatever pytest's import mode or rootdir.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import model_zoo  # noqa: E402  pylint: disable=wrong-import-position

FLAGSHIP_OPS = model_zoo.mb.FLAGSHIP_OPS


def test_flagship_has_the_65_expected_ops():
    path = model_zoo.get_model("mnv2_a035_96_c1000")
    ops = model_zoo.ops_in(path)
    assert len(ops) == 65
    assert dict(collections.Counter(ops)) == FLAGSHIP_OPS
    # Served from the cache the second time.
    assert model_zoo.get_model("mnv2_a035_96_c1000") == path


@pytest.mark.parametrize("name", sorted(model_zoo.MODELS) + sorted(model_zoo.UNSUPPORTED_MODELS))
def test_model_has_its_expected_ops(name):
    spec = model_zoo.MODELS.get(name) or model_zoo.UNSUPPORTED_MODELS[name]
    assert model_zoo.op_counts(model_zoo.get_model(name)) == spec.expect_ops


@pytest.mark.parametrize("seed", model_zoo.TEST_SEEDS)
@pytest.mark.parametrize("kind", model_zoo.SINGLE_OP_KINDS)
def test_single_op_model_has_its_op(kind, seed):
    path = model_zoo.single_op_model(kind, seed)
    ops = model_zoo.ops_in(path)
    assert model_zoo.SINGLE_OP_MAIN_OP[kind] in ops
    assert len(ops) <= 3, ops
    if kind == "conv_per_tensor":
        assert _conv_weight_scale_count(path) == 1


def test_single_op_params_are_the_same_in_every_process():
    """The parameters (and so the cache keys) may depend on nothing but kind and seed: not on
    the process's hash seed, not on what ran before."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; sys.path.insert(0, {tests!r}); import model_zoo; "
            "print(json.dumps(model_zoo.single_op_params('conv', 3)))").format(tests=str(Path(__file__).parent))
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": "12345"}).stdout
    assert json.loads(other) == json.loads(json.dumps(model_zoo.single_op_params("conv", 3)))
    assert model_zoo.single_op_params("conv", 3) != model_zoo.single_op_params("conv", 4)


def _conv_weight_scale_count(path) -> int:
    """Number of quantization scales of the first CONV_2D's filter tensor."""
    import tflite  # pylint: disable=import-outside-toplevel

    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.CONV_2D:
            return graph.Tensors(op.Inputs(1)).Quantization().ScaleLength()
    raise AssertionError("no CONV_2D")
