"""Factory of int8 .tflite fixture models for the mnv2gen tests.

Two families of models, both built with TensorFlow on first use and then
cached on disk:

* ``MODELS`` / :func:`get_model` -- named whole networks (MobileNetV2 and V1
  variants, special heads).  ``mnv2_a035_96_c1000`` is the flagship.
* :func:`single_op_model` -- tiny models around one operator (plus at most a
  helper op), with random shapes and random quantization ranges drawn from
  a seed, for fuzzing one kernel at a time.

Cache: ``$MNV2GEN_MODEL_CACHE`` if set, else ``tests/.model_cache``.  A
cached file's name holds a hash of everything that determines it (builder
name, its parameters, ``ZOO_VERSION``, ``model_builders.BUILDER_VERSION``
and the TensorFlow version), so editing a spec invalidates it; bump
``ZOO_VERSION`` when editing a builder's code here.  Builds are guarded by a
per-model file lock and published with an atomic rename, so parallel pytest
workers never see half-written files.

Run as a script to build (and list the ops of) models ahead of time::

    python tests/model_zoo.py            # all named models
    python tests/model_zoo.py --ops 3    # plus 3 seeds of every single-op kind
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

# The shared MobileNet/conversion helpers live in tools/ (also used by
# tools/make_default_model.py); tools/ is not a package, so put it on the path.
_TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
if str(_TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(_TOOLS_DIR))

import model_builders as mb  # noqa: E402  pylint: disable=wrong-import-position
from model_builders import ops_in  # noqa: E402,F401  (re-exported)

# Bump when a builder in this file changes what it produces.
ZOO_VERSION = 2

CACHE_ENV = "MNV2GEN_MODEL_CACHE"
DEFAULT_CACHE_DIR = Path(__file__).parent / ".model_cache"


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """The folder holding cached models (created on demand)."""
    path = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tf_version() -> str:
    """TensorFlow's version without importing it (the converter's output
    depends on it)."""
    for dist in ("tensorflow", "tensorflow-cpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return "unknown"


def _cache_key(kind: str, params: dict[str, Any]) -> str:
    blob = json.dumps(
        {
            "kind": kind,
            "params": params,
            "zoo": ZOO_VERSION,
            "builders": mb.BUILDER_VERSION,
            "tf": _tf_version(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached_build(stem: str, key: str, build: Callable[[], bytes]) -> Path:
    """Returns ``<cache>/<stem>-<key>.tflite``, calling ``build`` if absent."""
    folder = cache_dir()
    path = folder / f"{stem}-{key}.tflite"
    if path.exists():
        return path
    # One builder per model at a time; other workers wait here, then find it.
    with open(folder / f"{stem}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            mb.atomic_write(path, build())
    return path


# ---------------------------------------------------------------------------
# Inspecting models
# ---------------------------------------------------------------------------


def op_counts(path) -> dict[str, int]:
    """``{op name: count}`` for a .tflite (path or bytes), in order of first
    appearance.  See :func:`ops_in`."""
    return dict(collections.Counter(ops_in(path)))


# ---------------------------------------------------------------------------
# Helpers for builders
# ---------------------------------------------------------------------------


def _keras():
    mb.import_tf()  # quiet TF import
    import keras  # pylint: disable=import-outside-toplevel

    return keras


def _mnv2_features(keras, inputs, alpha, pooling=None):
    """MobileNetV2 body (no top) applied to the Keras tensor ``inputs``."""
    base = keras.applications.MobileNetV2(
        alpha=alpha, input_tensor=inputs, include_top=False, weights=None, pooling=pooling
    )
    return base.output


def _convert_image_model(model, shape, seed, input_type="int8", output_type="int8") -> bytes:
    return mb.convert_mobilenet(model, shape, seed, input_type, output_type)


# ---------------------------------------------------------------------------
# Named whole-network builders
# ---------------------------------------------------------------------------


def build_mnv2(alpha, height, width, classes, input_type="int8", output_type="int8", seed=0):
    """keras.applications.MobileNetV2 with its own 1000/N-way softmax top."""
    shape = (height, width, 3)
    model = mb.make_mobilenet_v2(alpha, shape, classes, seed)
    return _convert_image_model(model, shape, seed, input_type, output_type)


def build_mnv2_trained_export(alpha, size, classes, dead, near_dead, seed=0):
    """MobileNetV2 as real trained exports come (Edge Impulse, ST model zoo): a few training
    steps (batch-norm momentum 0.9), dead and near-dead channels (tiny gammas: weight scales
    around 1e-7 and large right shifts), and explicit PAD [[0,0],[0,1],[0,1],[0,0]] before
    every stride-2 VALID depthwise convolution."""
    shape = (size, size, 3)
    model = mb.make_mobilenet_v2(alpha, shape, classes, seed)
    mb.train_briefly(model, shape, classes, seed)
    mb.deaden_channels(model, seed, dead, near_dead)
    return mb.explicit_pads(_convert_image_model(model, shape, seed))


def build_mnv2_head(alpha, size, head, seed=0):
    """MobileNetV2 body (include_top=False) with a custom head.

    heads:
      ``sigmoid``  global-average pooling + Dense(1, sigmoid)
      ``avgpool``  AveragePooling2D(3) + Flatten + Dense(10, softmax)
      ``mean``     explicit GlobalAveragePooling2D + Dense(10) (logits out)
      ``zeropad``  ZeroPadding2D(1) on the input (so the first CONV_2D reads
                   a PAD), and ZeroPadding2D(1) + 3x3 stride-2 VALID conv on
                   the features: symmetric padding is not TF "SAME", so the
                   converter keeps explicit PAD ops
      ``dynamic``  GlobalAveragePooling2D(keepdims) + Reshape((C,)) with an
                   unknown batch size: the reshape target is computed at run
                   time (SHAPE/STRIDED_SLICE/PACK feed RESHAPE)
    """
    keras = _keras()
    mb.reset_keras(seed)
    shape = (size, size, 3)
    layers = keras.layers
    inputs = keras.Input(shape)
    if head == "sigmoid":
        x = _mnv2_features(keras, inputs, alpha, pooling="avg")
        x = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    elif head == "avgpool":
        x = _mnv2_features(keras, inputs, alpha)
        x = layers.AveragePooling2D(3)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(10, activation="softmax", name="predictions")(x)
    elif head == "mean":
        x = _mnv2_features(keras, inputs, alpha)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(10, name="logits")(x)
    elif head == "zeropad":
        x = layers.ZeroPadding2D(((1, 1), (1, 1)))(inputs)
        x = _mnv2_features(keras, x, alpha)
        x = layers.ZeroPadding2D(((1, 1), (1, 1)))(x)
        x = layers.Conv2D(64, 3, strides=2, padding="valid", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(10, activation="softmax", name="predictions")(x)
    elif head == "dynamic":
        x = _mnv2_features(keras, inputs, alpha)
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Reshape((x.shape[-1],))(x)
        x = layers.Dense(10, activation="softmax", name="predictions")(x)
    else:
        raise ValueError(f"unknown head {head!r}")
    model = keras.Model(inputs, x)
    mb.prepare_untrained(model, shape, seed)  # needs a free batch size
    if head != "dynamic":
        # Converting through a batch-1 input lets the converter make Flatten a
        # static RESHAPE; with batch None, as for the "dynamic" head, the
        # reshape target is computed at run time.
        fixed = keras.Input(shape, batch_size=1)
        model = keras.Model(fixed, model(fixed))
    return _convert_image_model(model, shape, seed)


def build_mnv2_nchw(alpha, size, classes, permute_at="input", padded=("DEPTHWISE_CONV_2D", "CONV_2D"), seed=0):
    """MobileNetV2 behind an NCHW input, as litert-torch converts a PyTorch model: the input
    [1, 3, H, W] is transposed to NHWC (Keras' Permute((2, 3, 1)): a TRANSPOSE with perm
    [0, 2, 3, 1]) before the stem, and the stride-2 convolutions (`padded`: the stem's and the
    depthwise ones) are padded by explicit PADs, so the stem reads a PAD of the TRANSPOSE. ``permute_at="inside"``: a small NHWC network with transposes inside
    (NHWC -> NCHW, a 1x1 convolution, back to NHWC), TRANSPOSEs not at the input."""
    keras = _keras()
    layers = keras.layers
    if permute_at == "input":
        body = mb.make_mobilenet_v2(alpha, (size, size, 3), classes, seed)
        inputs = keras.Input((3, size, size), batch_size=1)
        model = keras.Model(inputs, body(layers.Permute((2, 3, 1))(inputs)))
        images = mb.representative_images((size, size, 3), mb.REP_COUNT, seed + 2000).transpose(0, 3, 1, 2)
        return mb.explicit_pads(mb.convert_int8(model, mb.representative_dataset(images)), padded)
    inputs = keras.Input((size, size, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = layers.Conv2D(size // 2, 1, activation="relu6")(layers.Permute((3, 1, 2))(x))
    x = layers.GlobalAveragePooling2D()(layers.Permute((2, 3, 1))(x))
    model = keras.Model(inputs, layers.Dense(classes)(x))
    return _convert_image_model(model, (size, size, 3), seed)


def build_mnv2_rescaling(alpha, size, classes, seed=0):
    """MobileNetV2 behind Keras's `Rescaling(1/127.5, offset=-1)` input layer, the tutorials'
    way to put preprocessing in the model: raw pixels (0..255, int8-quantized) in, and the
    converter leaves an int8 MUL and ADD by constants before the stem."""
    keras = _keras()
    mb.reset_keras(seed)
    shape = (size, size, 3)
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = _mnv2_features(keras, x, alpha, pooling="avg")
    x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x)
    mb.prepare_untrained(model, shape, seed)
    fixed = keras.Input(shape, batch_size=1)
    model = keras.Model(fixed, model(fixed))
    images = mb.representative_images(shape, mb.REP_COUNT, seed + 2000, value_range=(0.0, 255.0))
    return mb.convert_int8(model, mb.representative_dataset(images))


def build_mnv1(alpha, size, classes, seed=0):
    """keras.applications.MobileNet (V1).  Its top is GAP(keepdims) + Dropout
    + 1x1 Conv2D 'conv_preds' + Reshape + softmax, so the classifier to
    calibrate is that conv; with weights=None any input size is accepted."""
    keras = _keras()
    mb.reset_keras(seed)
    shape = (size, size, 3)
    model = keras.applications.MobileNet(
        alpha=alpha, input_shape=shape, weights=None, classes=classes
    )
    mb.prepare_untrained(model, shape, seed, classifier=model.get_layer("conv_preds"))
    return _convert_image_model(model, shape, seed)


def build_fc_rows_head(rows, features, classes, seed=0):
    """[rows, features] -> Dense(classes) -> reshape to [1, rows*classes].

    A head applying one FULLY_CONNECTED to several rows at once.  Inputs look
    like pooled ReLU6 features (0..6)."""
    keras = _keras()
    mb.reset_keras(seed)
    inputs = keras.Input(batch_shape=(rows, features))
    x = keras.layers.Dense(classes, name="logits")(inputs)
    x = keras.ops.reshape(x, (1, rows * classes))
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed + 3000)
    calib = rng.uniform(0.0, 6.0, (mb.CALIB_COUNT * rows, features))
    mb.fit_classifier(model.get_layer("logits"), calib, seed)
    samples = rng.uniform(0.0, 6.0, (mb.REP_COUNT, rows, features)).astype(np.float32)
    rep = mb.representative_dataset(samples, add_batch_dim=False)
    return mb.convert_int8(model, rep)


def build_unsupported_maxpool(seed=0):
    """CONV_2D -> MAX_POOL_2D -> CONV_2D: an op mnv2gen does not support, for
    the tests of its error messages."""
    keras = _keras()
    mb.reset_keras(seed)
    shape = (32, 32, 3)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 1)(x)
    return _convert_image_model(keras.Model(inputs, x), shape, seed)


def _small_conv_net(keras, shape):
    """Conv -> depthwise -> conv -> GAP -> Dense: a few of the ops every converter mode touches
    (the 1x1 conv has over 1,024 weights: dynamic-range quantization leaves smaller ones float)."""
    inputs = keras.Input(shape, batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(160, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def build_not_int8(mode, seed=0):
    """A small conv net converted the ways that do not give a fully int8 model, for the
    tests of the message that says what the model is: ``float`` (no optimization),
    ``dynamic_range`` (Optimize.DEFAULT, no representative dataset), ``float16``
    (supported_types float16), ``int16x8`` (16-bit activations, int8 weights)."""
    keras = _keras()
    tf = mb.import_tf()
    mb.reset_keras(seed)
    shape = (32, 32, 3)
    converter = tf.lite.TFLiteConverter.from_keras_model(_small_conv_net(keras, shape))
    if mode != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int16x8":
        rng = np.random.default_rng(seed)
        converter.representative_dataset = mb.representative_dataset(
            rng.uniform(-1, 1, (mb.REP_COUNT, *shape)).astype(np.float32))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode != "dynamic_range" and mode != "float":
        raise ValueError(f"unknown mode {mode!r}")
    return converter.convert()


def build_mnv3_small(seed=0):
    """keras.applications.MobileNetV3Small (alpha 0.75, 96x96, its own preprocessing layer),
    int8: HARD_SWISH and squeeze-excite MULs that mnv2gen does not support."""
    keras = _keras()
    mb.reset_keras(seed)
    shape = (96, 96, 3)
    model = keras.applications.MobileNetV3Small(input_shape=shape, alpha=0.75, weights=None, classes=10)
    fixed = keras.Input(shape, batch_size=1)
    return _convert_image_model(keras.Model(fixed, model(fixed)), shape, seed)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: ``builder(**params)`` returns the .tflite bytes."""

    name: str
    builder: Callable[..., bytes]
    params: dict[str, Any] = field(default_factory=dict)
    # The operator counts of the converted model (checked by the zoo tests).
    expect_ops: dict[str, int] = field(default_factory=dict)

    def __call__(self) -> bytes:
        return self.builder(**self.params)

    @property
    def cache_key(self) -> str:
        return _cache_key(self.builder.__name__, self.params)


def _spec(name, builder, expect_ops=None, **params) -> ModelSpec:
    return ModelSpec(name, builder, params, expect_ops or {})


def _mnv2_spec(name, alpha, height, width, classes, extra_ops=None, **params) -> ModelSpec:
    """A stock keras.applications MobileNetV2 (body and top), plus any operators the options add."""
    return _spec(name, build_mnv2, _ops(_MNV2_BODY, _MNV2_TOP, extra_ops or {}),
                 alpha=alpha, height=height, width=width, classes=classes, **params)


# Operator counts of the keras.applications bodies, without their tops.
_MNV2_BODY = {"CONV_2D": 35, "DEPTHWISE_CONV_2D": 17, "ADD": 10}
_MNV1_BODY = {"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13}
# Stock tops: MobileNetV2's GAP + Dense(softmax); MobileNet's GAP + 1x1 conv
# + Reshape (whose target the converter leaves computed from the dynamic
# batch size: SHAPE/STRIDED_SLICE/PACK) + softmax.
_MNV2_TOP = {"MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}
_MNV1_TOP = {"MEAN": 1, "CONV_2D": 1, "SHAPE": 1, "STRIDED_SLICE": 1, "PACK": 1, "RESHAPE": 1,
             "SOFTMAX": 1}


def _ops(*parts: dict[str, int]) -> dict[str, int]:
    """Adds up operator counts."""
    total: collections.Counter = collections.Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def _by_name(*specs: ModelSpec) -> dict[str, ModelSpec]:
    return {spec.name: spec for spec in specs}


# MobileNetV2 0.35/96 fixtures that look like real trained exports (build_mnv2_trained_export),
# by their number of classes.
TRAINED_EXPORTS = {"mnv2_a035_96_export_c3": 3, "mnv2_a035_96_export_c1000": 1000}

MODELS: dict[str, ModelSpec] = _by_name(
    # The flagship: 65 ops.
    _mnv2_spec("mnv2_a035_96_c1000", 0.35, 96, 96, 1000),
    _mnv2_spec("mnv2_a035_96_c10", 0.35, 96, 96, 10),
    _mnv2_spec("mnv2_a05_128_c2", 0.5, 128, 128, 2),
    _mnv2_spec("mnv2_a10_96_c10", 1.0, 96, 96, 10),
    _mnv2_spec("mnv2_a035_160_c10", 0.35, 160, 160, 10),
    _mnv2_spec("mnv2_a035_nonsquare_c10", 0.35, 96, 128, 10),
    _spec("mnv2_a035_96_c1_sigmoid", build_mnv2_head,
          _ops(_MNV2_BODY, {"MEAN": 1, "FULLY_CONNECTED": 1, "LOGISTIC": 1}),
          alpha=0.35, size=96, head="sigmoid"),
    _mnv2_spec("mnv2_a035_96_uint8_float", 0.35, 96, 96, 10, {"QUANTIZE": 1, "DEQUANTIZE": 1},
               input_type="uint8", output_type="float32"),
    # The converter's default float input (no inference_input_type): a float32 QUANTIZE first.
    _mnv2_spec("mnv2_a035_96_float_in", 0.35, 96, 96, 1000, {"QUANTIZE": 1}, input_type="float32"),
    _spec("mnv2_a035_96_rescaling", build_mnv2_rescaling,
          _ops(_MNV2_BODY, {"MUL": 1, "ADD": 1}, {"MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}),
          alpha=0.35, size=96, classes=10),
    _spec("mnv2_a035_96_zeropad", build_mnv2_head,
          _ops(_MNV2_BODY, _MNV2_TOP, {"PAD": 2, "CONV_2D": 1}),
          alpha=0.35, size=96, head="zeropad"),
    _spec("mnv2_a035_96_avgpool_head", build_mnv2_head,
          _ops(_MNV2_BODY, {"AVERAGE_POOL_2D": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}),
          alpha=0.35, size=96, head="avgpool"),
    _spec("mnv2_a035_96_mean_head", build_mnv2_head,
          _ops(_MNV2_BODY, {"MEAN": 1, "FULLY_CONNECTED": 1}),
          alpha=0.35, size=96, head="mean"),
    _spec("mnv2_a035_96_dynamic_batch", build_mnv2_head,
          _ops(_MNV2_BODY, _MNV2_TOP, {"SHAPE": 1, "STRIDED_SLICE": 1, "PACK": 1, "RESHAPE": 1}),
          alpha=0.35, size=96, head="dynamic"),
    _spec("mnv1_a025_96_c10", build_mnv1, _ops(_MNV1_BODY, _MNV1_TOP),
          alpha=0.25, size=96, classes=10),
    _spec("mnv1_a05_128_c10", build_mnv1, _ops(_MNV1_BODY, _MNV1_TOP),
          alpha=0.5, size=128, classes=10),
    _spec("fc_rows_head", build_fc_rows_head, {"FULLY_CONNECTED": 1, "RESHAPE": 1},
          rows=9, features=1280, classes=14),
    *(_spec(name, build_mnv2_trained_export, _ops(_MNV2_BODY, _MNV2_TOP, {"PAD": 4}),
            alpha=0.35, size=96, classes=classes, dead=[[1e-6, 1.0], [1e-10, 0.0]],
            near_dead=[3e-3, 3e-4])
      for name, classes in TRAINED_EXPORTS.items()),
)


# The small network of build_not_int8, whatever its number format.
_NOT_INT8_BODY = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}

# Models with operators mnv2gen rejects, for error-path tests.  Kept out of
# MODELS, which the bit-exactness tests iterate over; get_model knows both.
UNSUPPORTED_MODELS: dict[str, ModelSpec] = _by_name(
    _spec("unsupported_maxpool", build_unsupported_maxpool, {"CONV_2D": 2, "MAX_POOL_2D": 1}),
    _spec("mnv3_small_a075_96", build_mnv3_small,
          {"MUL": 19, "ADD": 7, "CONV_2D": 43, "HARD_SWISH": 19, "DEPTHWISE_CONV_2D": 11, "MEAN": 10,
           "RESHAPE": 1, "SOFTMAX": 1}),
    *(_spec(f"not_int8_{mode}", build_not_int8, {**_NOT_INT8_BODY, **extra}, mode=mode)
      for mode, extra in (("float", {}), ("dynamic_range", {}), ("float16", {"DEQUANTIZE": 6}),
                          ("int16x8", {"QUANTIZE": 1, "DEQUANTIZE": 1}))),
)


# PyTorch models as litert-torch converts them (an NCHW input transposed to NHWC first): kept
# out of MODELS, whose every fixture also runs on four boards in the full tier.
NCHW_MODELS: dict[str, ModelSpec] = _by_name(
    _spec("mnv2_a035_96_c10_nchw", build_mnv2_nchw, _ops(_MNV2_BODY, _MNV2_TOP, {"TRANSPOSE": 1, "PAD": 5}),
          alpha=0.35, size=96, classes=10, padded=["DEPTHWISE_CONV_2D", "CONV_2D"]),
    _spec("transpose_of_features", build_mnv2_nchw,
          {"CONV_2D": 2, "TRANSPOSE": 2, "MEAN": 1, "FULLY_CONNECTED": 1},  # mid-graph
          alpha=0.35, size=32, classes=4, permute_at="inside"),
)


# Larger MobileNetV2s for the memory benchmark (the figures at 128 and 224, and the
# paper's Table 3 case, a=1.0 at 224). Too slow to verify in every test run.
BENCH_MODELS: dict[str, ModelSpec] = _by_name(
    _mnv2_spec("mnv2_a035_128_c1000", 0.35, 128, 128, 1000),
    # ST model-zoo style: uint8 input, QUANTIZE to int8 first; the int8-input twin above.
    _mnv2_spec("mnv2_a035_128_uint8", 0.35, 128, 128, 1000, {"QUANTIZE": 1}, input_type="uint8"),
    _mnv2_spec("mnv2_a035_224_c1000", 0.35, 224, 224, 1000),
    _mnv2_spec("mnv2_a10_224_c1000", 1.0, 224, 224, 1000),
)


def get_model(name: str) -> Path:
    """Path of the cached .tflite for ``MODELS[name]`` (or ``UNSUPPORTED_MODELS[name]``,
    ``BENCH_MODELS[name]``), built if absent."""
    spec = MODELS.get(name) or UNSUPPORTED_MODELS.get(name) or BENCH_MODELS.get(name) or NCHW_MODELS.get(name)
    if spec is None:
        known = sorted(MODELS) + sorted(UNSUPPORTED_MODELS) + sorted(BENCH_MODELS) + sorted(NCHW_MODELS)
        raise KeyError(f"no model {name!r}; known: {known}")
    return _cached_build(name, spec.cache_key, spec)


# ---------------------------------------------------------------------------
# Single-op models
# ---------------------------------------------------------------------------

SINGLE_OP_KINDS = (
    "conv",
    "conv_per_tensor",
    "depthwise",
    "add",
    "pad",
    "mean",
    "avgpool",
    "fc",
    "softmax",
    "logistic",
    "quantize_uint8",
    "dequantize_float",
)

# The operator each single-op kind is about (always present in its model).
SINGLE_OP_MAIN_OP = {
    "conv": "CONV_2D",
    "conv_per_tensor": "CONV_2D",
    "depthwise": "DEPTHWISE_CONV_2D",
    "add": "ADD",
    "pad": "PAD",
    "mean": "MEAN",
    "avgpool": "AVERAGE_POOL_2D",
    "fc": "FULLY_CONNECTED",
    "softmax": "SOFTMAX",
    "logistic": "LOGISTIC",
    "quantize_uint8": "QUANTIZE",
    "dequantize_float": "DEQUANTIZE",
}

_ACTIVATIONS = ("none", "relu", "relu6")


def _random_range(rng, log_width=(-3.0, 3.0)) -> list[float]:
    """A float range [lo, hi] containing 0 whose width is log-uniform in
    10**log_width (1e-3..1e3 by default) and whose zero point lands anywhere
    in the int8 range."""
    width = 10.0 ** rng.uniform(*log_width)
    frac_negative = rng.uniform(0.0, 1.0)
    return [float(-width * frac_negative), float(width * (1.0 - frac_negative))]


def _same_pads(size, kernel, stride):
    """TF "SAME" (before, after) padding of one dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def single_op_params(kind: str, seed: int) -> dict[str, Any]:
    """Draws the random description of single-op model ``kind``/``seed``.

    Plain JSON data: it is both the builder's input and the cache key.
    """
    if kind not in SINGLE_OP_KINDS:
        raise ValueError(f"unknown single-op kind {kind!r}; one of {SINGLE_OP_KINDS}")
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731  inclusive
    p: dict[str, Any] = {"kind": kind, "seed": seed, "input_range": _random_range(rng)}
    # Weight magnitude: with the input range it sets the output scale.
    p["weight_gain"] = float(10.0 ** rng.uniform(-2.0, 1.0))
    # Fused activation (used by conv-like kinds, add and fc; drawn for all).
    p["activation"] = str(rng.choice(_ACTIVATIONS))

    if kind in ("conv", "conv_per_tensor", "quantize_uint8", "dequantize_float"):
        kh = r(1, 5)
        kw = kh if rng.uniform() < 0.7 else r(1, 5)
        stride = r(1, 2)
        padding = str(rng.choice(["same", "valid"]))
        p.update(
            height=r(kh, 20), width=r(kw, 20), in_ch=r(1, 16), out_ch=r(1, 24),
            kernel=[kh, kw], stride=stride, padding=padding,
        )
    elif kind == "depthwise":
        k = 3 if rng.uniform() < 0.6 else r(1, 5)
        kh, kw = (k, k) if rng.uniform() < 0.8 else (r(1, 5), r(1, 5))
        p.update(
            height=r(kh, 20), width=r(kw, 20), in_ch=r(1, 32),
            kernel=[kh, kw], stride=r(1, 2), padding=str(rng.choice(["same", "valid"])),
        )
    elif kind == "add":
        # ADD(x, conv1x1(x)); the branch gain spans 1e-2..1e2 so the two
        # ADD inputs get very different scales.
        p.update(height=r(1, 16), width=r(1, 16), in_ch=r(1, 24))
        p["weight_gain"] = float(10.0 ** rng.uniform(-2.0, 2.0))
    elif kind == "pad":
        kh, kw = r(1, 4), r(1, 4)
        stride = r(1, 2)
        h, w = r(max(kh, 2), 16), r(max(kw, 2), 16)
        pads = [[r(0, 3), r(0, 3)], [r(0, 3), r(0, 3)]]
        if pads == [[0, 0], [0, 0]]:
            pads[0][0] = 1
        # Padding equal to TF "SAME" would be folded into the conv: avoid it.
        if tuple(pads[0]) == _same_pads(h, kh, stride) and tuple(pads[1]) == _same_pads(w, kw, stride):
            pads[0][0] += 1
        p.update(
            height=h, width=w, in_ch=r(1, 16), out_ch=r(1, 16), kernel=[kh, kw],
            stride=stride, pads=pads, consumer=str(rng.choice(["conv", "depthwise"])),
        )
    elif kind == "mean":
        p.update(height=r(1, 12), width=r(1, 12), in_ch=r(1, 64), keepdims=bool(rng.uniform() < 0.5))
    elif kind == "avgpool":
        ph, pw = r(1, 4), r(1, 4)
        if rng.uniform() < 0.5:
            pw = ph
        p.update(
            height=r(ph, 16), width=r(pw, 16), in_ch=r(1, 32), pool=[ph, pw],
            stride=[r(1, 3), r(1, 3)], padding=str(rng.choice(["same", "valid"])),
        )
    elif kind == "fc":
        p.update(rows=r(1, 9) if rng.uniform() < 0.5 else 1, in_features=r(1, 256), units=r(1, 64))
    elif kind == "softmax":
        units = int(10 ** rng.uniform(0.3, 3.0))
        # Over N classes the output only moves (in steps of 1/256) when the
        # logits spread over several units: below ~2 ln N wide, a softmax
        # is a constant 1/N.  So the input range is 2 ln N .. ~300 wide.
        low = np.log10(max(1.0, 2.0 * np.log(units)))
        p.update(rows=r(1, 4) if rng.uniform() < 0.3 else 1, units=units,
                 input_range=_random_range(rng, (low, 2.5)))
    elif kind == "logistic":
        # The FC is calibrated so that the sigmoid input has this spread.
        p.update(in_features=r(1, 128), units=r(1, 16), logit_std=float(10.0 ** rng.uniform(-0.5, 1.0)))
    return p


def _weights(rng, shape, fan_in, gain):
    """Random N(0,1) weights normalised by fan-in, times ``gain``."""
    return (rng.normal(0.0, 1.0, shape) * gain / np.sqrt(max(fan_in, 1))).astype(np.float32)


def _bias(rng, n, gain, input_width):
    """Random bias on the scale of the layer's output (about gain x input
    spread), so it neither vanishes nor drowns the weighted sum."""
    return (rng.normal(0.0, 0.3, n) * gain * input_width).astype(np.float32)


def build_single_op(params: dict[str, Any]) -> bytes:
    """Builds the model described by :func:`single_op_params`."""
    keras = _keras()
    layers = keras.layers
    kind = params["kind"]
    seed = params["seed"]
    mb.reset_keras(seed)
    rng = np.random.default_rng(seed)
    lo, hi = params["input_range"]
    width = hi - lo
    gain = params["weight_gain"]
    act = None if params["activation"] == "none" else params["activation"]
    input_type, output_type, per_channel = "int8", "int8", True

    if kind in ("fc", "logistic"):
        rows = params.get("rows", 1)
        in_shape = (params["in_features"],)
        inputs = keras.Input(batch_shape=(rows,) + in_shape) if rows > 1 else keras.Input(in_shape)
    elif kind == "softmax":
        rows = params["rows"]
        in_shape = (params["units"],)
        inputs = keras.Input(batch_shape=(rows,) + in_shape) if rows > 1 else keras.Input(in_shape)
    else:
        rows = 1
        in_shape = (params["height"], params["width"], params["in_ch"])
        inputs = keras.Input(in_shape)

    # Representative data: uniform over the range, extremes included so the
    # whole range is used.
    data_rng = np.random.default_rng(seed + 1)
    shape = (mb.REP_COUNT, rows) + in_shape if rows > 1 else (mb.REP_COUNT,) + in_shape
    samples = data_rng.uniform(lo, hi, shape).astype(np.float32)
    samples.reshape(mb.REP_COUNT, -1)[0, 0] = lo
    samples.reshape(mb.REP_COUNT, -1)[1, 0] = hi

    def conv(x, filters, kernel, stride, padding, activation):
        layer = layers.Conv2D(filters, kernel, strides=stride, padding=padding, activation=activation)
        y = layer(x)
        cin = x.shape[-1]
        k = layer.kernel.shape
        layer.set_weights([
            _weights(rng, k, k[0] * k[1] * cin, gain),
            _bias(rng, filters, gain, width),
        ])
        return y

    def depthwise(x, kernel, stride, padding, activation):
        layer = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, activation=activation)
        y = layer(x)
        k = layer.kernel.shape
        layer.set_weights([
            _weights(rng, k, k[0] * k[1], gain),
            _bias(rng, k[2], gain, width),
        ])
        return y

    def dense(x, units, activation):
        layer = layers.Dense(units, activation=activation)
        y = layer(x)
        k = layer.kernel.shape
        layer.set_weights([
            _weights(rng, k, k[0], gain),
            _bias(rng, units, gain, width),
        ])
        return y

    if kind in ("conv", "conv_per_tensor", "quantize_uint8", "dequantize_float"):
        x = conv(inputs, params["out_ch"], params["kernel"], params["stride"], params["padding"], act)
        per_channel = kind != "conv_per_tensor"
        input_type = "uint8" if kind == "quantize_uint8" else "int8"
        output_type = "float32" if kind == "dequantize_float" else "int8"
    elif kind == "depthwise":
        x = depthwise(inputs, params["kernel"], params["stride"], params["padding"], act)
    elif kind == "add":
        branch = conv(inputs, params["in_ch"], 1, 1, "valid", None)
        x = layers.Add()([inputs, branch])
        if act:
            x = layers.Activation(act)(x)  # fused into the ADD
    elif kind == "pad":
        x = layers.ZeroPadding2D([tuple(pd) for pd in params["pads"]])(inputs)
        if params["consumer"] == "conv":
            x = conv(x, params["out_ch"], params["kernel"], params["stride"], "valid", act)
        else:
            x = depthwise(x, params["kernel"], params["stride"], "valid", act)
    elif kind == "mean":
        x = layers.GlobalAveragePooling2D(keepdims=params["keepdims"])(inputs)
    elif kind == "avgpool":
        x = layers.AveragePooling2D(params["pool"], params["stride"], padding=params["padding"])(inputs)
    elif kind == "fc":
        x = dense(inputs, params["units"], act)
        if rows > 1:
            x = keras.ops.reshape(x, (1, rows * params["units"]))
    elif kind == "softmax":
        x = layers.Softmax()(inputs)
    elif kind == "logistic":
        layer = layers.Dense(params["units"], activation="sigmoid")
        x = layer(inputs)
        # Calibrated so the sigmoid sees inputs of spread "logit_std".
        mb.fit_classifier(layer, samples.reshape(-1, in_shape[0]), seed, params["logit_std"])
    else:
        raise ValueError(kind)
    model = keras.Model(inputs, x)
    rep = mb.representative_dataset(samples, add_batch_dim=rows == 1)
    return mb.convert_int8(model, rep, input_type, output_type, per_channel)


def single_op_model(kind: str, seed: int) -> Path:
    """Path of the cached single-op model ``kind``/``seed``, built if absent.

    See :data:`SINGLE_OP_KINDS`; :func:`single_op_params` tells the shapes
    and settings that were drawn.
    """
    params = single_op_params(kind, seed)
    key = _cache_key("single_op", params)
    return _cached_build(f"op_{kind}_s{seed}", key, lambda: build_single_op(params))


# Hand-picked single ops for the SIMD kernels' fast paths, which random draws reach only now
# and then: depthwise convolutions with channels in groups of four (3x3 stride 1 and 2, SAME
# and VALID, a 5x5 window, more channels than a border window's copy holds, a map with no
# inside window at all), narrow 1x1 convolutions (4..16 input channels, stride 1 and 2),
# wide ones (output channels not in groups of four, stride 2), convolutions on small
# receptive fields (the stem's, an odd one with an odd channel count) and on a larger one,
# fully connected layers (units not in groups of four, several rows), an ADD on its input
# tables.
_FAST_PATH_BASE = {"input_range": [-1.5, 2.5], "weight_gain": 0.7, "activation": "relu6"}
FAST_PATH_OPS: dict[str, dict[str, Any]] = {
    "dw3_s1_same_c12": {"kind": "depthwise", "height": 7, "width": 9, "in_ch": 12, "kernel": [3, 3], "stride": 1,
                        "padding": "same"},
    "dw3_s2_same_c8": {"kind": "depthwise", "height": 8, "width": 10, "in_ch": 8, "kernel": [3, 3], "stride": 2,
                       "padding": "same", "activation": "none"},
    "dw3_s2_valid_c16": {"kind": "depthwise", "height": 9, "width": 11, "in_ch": 16, "kernel": [3, 3],
                         "stride": 2, "padding": "valid"},
    "dw5_s1_same_c8": {"kind": "depthwise", "height": 8, "width": 7, "in_ch": 8, "kernel": [5, 5], "stride": 1,
                       "padding": "same"},
    "dw3_s1_same_c36_3x3": {"kind": "depthwise", "height": 3, "width": 3, "in_ch": 36, "kernel": [3, 3],
                            "stride": 1, "padding": "same", "input_range": [-40.0, 3.0]},
    "pw_c4_s1": {"kind": "conv", "height": 5, "width": 7, "in_ch": 4, "out_ch": 6, "kernel": [1, 1], "stride": 1,
                 "padding": "valid"},
    "pw_c8_s1": {"kind": "conv", "height": 6, "width": 5, "in_ch": 8, "out_ch": 24, "kernel": [1, 1], "stride": 1,
                 "padding": "valid", "activation": "none"},
    "pw_c12_s2": {"kind": "conv", "height": 7, "width": 9, "in_ch": 12, "out_ch": 5, "kernel": [1, 1], "stride": 2,
                  "padding": "valid"},
    "pw_c16_s1": {"kind": "conv", "height": 4, "width": 6, "in_ch": 16, "out_ch": 32, "kernel": [1, 1], "stride": 1,
                  "padding": "valid", "weight_gain": 3.0},
    "add_c8": {"kind": "add", "height": 5, "width": 6, "in_ch": 8, "weight_gain": 20.0, "activation": "none"},
    "conv3_s2_same_c3": {"kind": "conv", "height": 9, "width": 11, "in_ch": 3, "out_ch": 16, "kernel": [3, 3],
                         "stride": 2, "padding": "same"},
    "conv2x3_s1_valid_c7_o5": {"kind": "conv", "height": 6, "width": 7, "in_ch": 7, "out_ch": 5, "kernel": [2, 3],
                               "stride": 1, "padding": "valid", "activation": "none"},
    "conv3_s1_same_c12_o6": {"kind": "conv", "height": 6, "width": 5, "in_ch": 12, "out_ch": 6, "kernel": [3, 3],
                             "stride": 1, "padding": "same"},
    "pw_c24_o10_s2": {"kind": "conv", "height": 5, "width": 7, "in_ch": 24, "out_ch": 10, "kernel": [1, 1],
                      "stride": 2, "padding": "valid"},
    "pw_c40_o16_s1": {"kind": "conv", "height": 3, "width": 4, "in_ch": 40, "out_ch": 16, "kernel": [1, 1],
                      "stride": 1, "padding": "valid", "activation": "none", "weight_gain": 4.0},
    "pw_c136_o7_s1": {"kind": "conv", "height": 3, "width": 5, "in_ch": 136, "out_ch": 7, "kernel": [1, 1],
                      "stride": 1, "padding": "valid"},
    "pw_wide_c200_o6_s1": {"kind": "conv", "height": 2, "width": 3, "in_ch": 200, "out_ch": 6, "kernel": [1, 1],
                           "stride": 1, "padding": "valid"},
    "fc_d64_u10": {"kind": "fc", "rows": 1, "in_features": 64, "units": 10},
    "fc_rows3_d32_u5": {"kind": "fc", "rows": 3, "in_features": 32, "units": 5, "activation": "none"},
}


def fast_path_model(name: str) -> Path:
    """Path of the cached model FAST_PATH_OPS[name], built if absent."""
    params = {**_FAST_PATH_BASE, "seed": 1000 + sorted(FAST_PATH_OPS).index(name), **FAST_PATH_OPS[name]}
    key = _cache_key("single_op", params)
    return _cached_build(f"fast_{name}", key, lambda: build_single_op(params))


# DEPTHWISE_GROUPS' cases (tests/test_depthwise_groups.py): its 3x3 window inside the map
# and its border pixels (a pointer per tap, DEPTHWISE_BORDER_CHANNELS channels a pass), both
# output roundings (RELU6 and none), strides 1 and 2, padding on every side (SAME on odd and
# even sizes), odd widths, a map too narrow for an inside window, 4 to 96 channels.
DEPTHWISE_GROUP_OPS: dict[str, dict[str, Any]] = {
    "s1_same_c4_7x5": {"height": 5, "width": 7, "in_ch": 4, "stride": 1, "padding": "same"},
    "s1_same_c96_5x3": {"height": 3, "width": 5, "in_ch": 96, "stride": 1, "padding": "same",
                        "activation": "none"},
    "s2_same_c20_9x7": {"height": 7, "width": 9, "in_ch": 20, "stride": 2, "padding": "same"},
    "s2_same_c68_6x8": {"height": 8, "width": 6, "in_ch": 68, "stride": 2, "padding": "same",
                        "activation": "none", "input_range": [-30.0, 2.0]},
    "s1_same_c8_2x1": {"height": 2, "width": 1, "in_ch": 8, "stride": 1, "padding": "same"},
    "s2_valid_c12_11x5": {"height": 5, "width": 11, "in_ch": 12, "stride": 2, "padding": "valid",
                          "activation": "none"},
    # Padded rows wider (3 x 144 bytes) than the zero-point row that was once on the stack
    # (384): every padded row's inside windows read the zero-point row in flash.
    "wide_s1_same_c144_4x3": {"height": 3, "width": 4, "in_ch": 144, "stride": 1, "padding": "same"},
}


def depthwise_group_model(name: str) -> Path:
    """Path of the cached 3x3 depthwise model DEPTHWISE_GROUP_OPS[name], built if absent."""
    params = {**_FAST_PATH_BASE, "kind": "depthwise", "kernel": [3, 3],
              "seed": 3000 + sorted(DEPTHWISE_GROUP_OPS).index(name), **DEPTHWISE_GROUP_OPS[name]}
    key = _cache_key("single_op", params)
    return _cached_build(f"dwg_{name}", key, lambda: build_single_op(params))


# A MEAN over more pixels than Helium's sums in int16 lanes at once (256: mve/mean.c.j2), on
# a channel count that leaves both of its channel loops a tail (tests/test_firmware.py).
LONG_MEAN = {**_FAST_PATH_BASE, "kind": "mean", "seed": 2000, "height": 17, "width": 16, "in_ch": 21,
             "keepdims": False, "input_range": [-3.0, 1.0]}


def long_mean_model() -> Path:
    """Path of the cached model LONG_MEAN, built if absent."""
    return _cached_build("long_mean", _cache_key("single_op", LONG_MEAN), lambda: build_single_op(LONG_MEAN))


# FULLY_CONNECTED layers for the tails of the DSP's FULLY_CONNECTED_STAGED (tests/test_firmware.py),
# beside FAST_PATH_OPS' two (an even count of input words; 10 and 5 units): odd counts of input
# words (9 and 5: the dot product enters its two-word loop at the second), units in groups of
# four and with three left, two rows staged in turn, and a depth not a multiple of four
# (FULLY_CONNECTED_PORTABLE on the DSP kernels).
FC_TAILS: dict[str, dict[str, Any]] = {
    "fc_rows2_d36_u7": {"kind": "fc", "rows": 2, "in_features": 36, "units": 7},
    "fc_d20_u8": {"kind": "fc", "rows": 1, "in_features": 20, "units": 8, "activation": "none"},
    "fc_d30_u6": {"kind": "fc", "rows": 1, "in_features": 30, "units": 6},
}


def fc_tail_model(name: str) -> Path:
    """Path of the cached model FC_TAILS[name], built if absent."""
    params = {**_FAST_PATH_BASE, "seed": 3000 + sorted(FC_TAILS).index(name), **FC_TAILS[name]}
    return _cached_build(name, _cache_key("single_op", params), lambda: build_single_op(params))


# Seeds of the single-op models the tests use (tests/test_ops.py, test_model_zoo.py).
TEST_SEEDS = range(4)


def fixture_builders() -> list[Callable[[], Path]]:
    """Every model the test suite reads, as calls that return its cached path."""
    named = [lambda n=name: get_model(n) for name in [*MODELS, *UNSUPPORTED_MODELS, *NCHW_MODELS]]
    ops = [lambda k=kind, s=seed: single_op_model(k, s) for kind in SINGLE_OP_KINDS for seed in TEST_SEEDS]
    fast = [lambda n=name: fast_path_model(n) for name in FAST_PATH_OPS]
    tails = [lambda n=name: fc_tail_model(n) for name in FC_TAILS]
    return named + ops + fast + tails + [long_mean_model]


def build_all(jobs: int = 1) -> int:
    """Build every test fixture that is not cached yet; returns how many were built. The
    cache's lock files make this safe beside other processes building the same models.
    With `jobs` > 1, that many processes share the list (TensorFlow's converter keeps one
    core busy; a fresh cache builds in half the time on two)."""
    return build_in_processes(__file__, build_share, jobs, lambda: set(cache_dir().glob("*.tflite")))


def build_in_processes(script: str, share: Callable[[int, int], None], jobs: int,
                       cached: Callable[[], set]) -> int:
    """Build a zoo's fixtures in `jobs` processes: share 0 here, the others by running
    `script --share PART JOBS`; returns how many files `cached()` gained."""
    before = cached()
    helpers = [subprocess.Popen([sys.executable, script, "--share", str(part), str(jobs)])
               for part in range(1, jobs)]
    share(0, jobs)
    failed = [helper.args for helper in helpers if helper.wait() != 0]
    if failed:
        raise RuntimeError(f"building fixtures failed in {failed}")
    return len(cached() - before)


def build_share(part: int, parts: int) -> None:
    """Build every `parts`-th fixture, starting at `part`."""
    for fixture in fixture_builders()[part::parts]:
        fixture()


# ---------------------------------------------------------------------------
# Command line: pre-build the cache and show what is in it
# ---------------------------------------------------------------------------


def _main(argv=None) -> int:
    import argparse  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="named models (default: all)")
    parser.add_argument("--ops", type=int, default=0, metavar="N",
                        help="also build seeds 0..N-1 of every single-op kind")
    parser.add_argument("--share", type=int, nargs=2, metavar=("PART", "PARTS"),
                        help="build every PARTS-th test fixture from PART on (build_all's helpers)")
    args = parser.parse_args(argv)
    if args.share:
        build_share(*args.share)
        return 0
    names = args.names or list(MODELS) + list(UNSUPPORTED_MODELS)
    total = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        path = get_model(name)
        print(f"{name:28s} {time.perf_counter() - t:6.1f}s  {op_counts(path)}", flush=True)
    for kind in SINGLE_OP_KINDS:
        for seed in range(args.ops):
            t = time.perf_counter()
            path = single_op_model(kind, seed)
            label = f"op {kind}/{seed}"
            print(f"{label:28s} {time.perf_counter() - t:6.1f}s  {op_counts(path)}", flush=True)
    print(f"total {time.perf_counter() - total:.1f}s, cache {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
