"""Shared helpers that build int8 TFLite models with TensorFlow/Keras.

Used by ``tools/make_default_model.py`` (the default model shipped in
``models/``) and by ``tests/model_zoo.py`` (the test fixture factory).

Untrained Keras networks quantize badly: every batch-norm layer is an
identity, so all per-channel scales come out alike, and activations either
blow up to the ReLU6 ceiling or fade away after a few dozen layers.  The
helpers here make an untrained network look statistically like a trained
one before it is converted:

* :func:`spread_batchnorm` gives every batch-norm layer random gamma/beta and
  then sets its moving statistics from a calibration batch, so every layer
  sees roughly normalised inputs (activations stay alive all the way down)
  while per-channel scales and offsets differ from channel to channel.
* :func:`calibrate_classifier` rescales the final classifier so that its
  logits vary by a few units from input to input, as a trained head's do;
  otherwise a 1000-way int8 softmax saturates to a constant output.

TensorFlow is imported lazily so that merely importing this module (e.g.
from a test that only reads cached models) stays cheap.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from typing import Callable, Iterable, Sequence

import numpy as np

# Bump whenever a builder changes in a way that changes the produced models;
# tests/model_zoo.py folds this into its cache keys.
BUILDER_VERSION = 1

# Default range of MobileNet inputs (``preprocess_input`` mode "tf").
MOBILENET_INPUT_RANGE = (-1.0, 1.0)


def import_tf():
    """Imports TensorFlow quietly (C++ INFO/WARNING logs off by default).

    oneDNN is turned off by default, as the test suite does, since its float
    rounding can move calibration ranges and thus quantization parameters:
    a model should come out the same from a script and from pytest.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf


def reset_keras(seed: int) -> None:
    """Clears Keras state (layer-name counters, graphs) and seeds every RNG.

    Clearing the session makes auto-generated layer names, and thus the
    tensor names inside the .tflite, the same on every build.
    """
    tf = import_tf()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)


# ---------------------------------------------------------------------------
# Representative data
# ---------------------------------------------------------------------------


def representative_images(
    shape: Sequence[int],
    count: int,
    seed: int,
    value_range: tuple[float, float] = MOBILENET_INPUT_RANGE,
) -> np.ndarray:
    """Returns ``count`` float32 images of ``shape`` (H, W, C) in ``value_range``.

    Half are i.i.d. uniform noise (what bit-exactness tests feed the model),
    half are smooth random fields with a per-image brightness and contrast,
    which, unlike noise, survive global average pooling and so make the
    classifier output differ between images.
    """
    tf = import_tf()
    rng = np.random.default_rng(seed)
    h, w, c = (int(d) for d in shape)
    lo, hi = value_range
    images = []
    for i in range(count):
        if i % 2 == 0:
            img = rng.uniform(-1.0, 1.0, (h, w, c))
        else:
            grid = int(rng.integers(2, 9))
            coarse = rng.uniform(-1.0, 1.0, (1, grid, grid, c)).astype(np.float32)
            img = tf.image.resize(coarse, (h, w), method="bilinear").numpy()[0]
            img = img * rng.uniform(0.3, 1.0) + rng.uniform(-0.6, 0.6)
            img = img + rng.normal(0.0, 0.05, img.shape)  # a little texture
            img = np.clip(img, -1.0, 1.0)
        # Map [-1, 1] onto the requested range.
        images.append(lo + (img + 1.0) * 0.5 * (hi - lo))
    return np.stack(images).astype(np.float32)


def representative_dataset(
    samples: Sequence[np.ndarray] | np.ndarray,
    add_batch_dim: bool = True,
) -> Callable[[], Iterable[list[np.ndarray]]]:
    """Wraps arrays as a converter representative-dataset generator.

    Each element of ``samples`` is one model input, given without its batch
    dimension (which is added) unless ``add_batch_dim`` is False, as for
    models whose input has a fixed leading dimension other than 1.
    """

    def gen():
        for sample in samples:
            arr = np.asarray(sample, np.float32)
            yield [arr[None] if add_batch_dim else arr]

    return gen


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------

_IO_TYPES = ("int8", "uint8", "float32")


def convert_int8(
    source,
    rep_data: Callable[[], Iterable[list[np.ndarray]]],
    input_type: str = "int8",
    output_type: str = "int8",
    per_channel: bool = True,
    trackable=None,
) -> bytes:
    """Converts to a full-integer int8 .tflite and returns its bytes.

    ``source`` is a Keras model or a ``tf.function`` with an input signature
    (then ``trackable`` must own its variables).  ``input_type`` and
    ``output_type`` are "int8", "uint8" or "float32".  With
    ``per_channel=False`` conv/FC weights get one scale per tensor.
    """
    tf = import_tf()
    if input_type not in _IO_TYPES or output_type not in _IO_TYPES:
        raise ValueError(f"I/O types must be among {_IO_TYPES}")
    if isinstance(source, tf.keras.Model):
        converter = tf.lite.TFLiteConverter.from_keras_model(source)
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [source.get_concrete_function()], trackable
        )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep_data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, input_type)
    converter.inference_output_type = getattr(tf, output_type)
    if not per_channel:
        # Private switch, but the only way to get per-tensor weight scales.
        converter._experimental_disable_per_channel = True  # pylint: disable=protected-access
    # The Keras-3 export path prints the whole SavedModel signature to stdout,
    # and the converter warns about input statistics it never needs here.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return bytes(converter.convert())


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename, so
    readers (e.g. parallel test workers) never see a partial file."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------


def ops_in(model: str | os.PathLike | bytes) -> list[str]:
    """Builtin operator names of a .tflite's main subgraph, in execution order.

    ``model`` is a path or the file's bytes.  Schema quirk: opcodes < 127 were
    historically stored in ``deprecated_builtin_code`` (an int8) and newer
    ones only in ``builtin_code``; converters fill both as they can, so the
    max of the two is the real code.
    """
    import tflite  # pylint: disable=import-outside-toplevel

    buf = bytes(model) if isinstance(model, (bytes, bytearray)) else open(model, "rb").read()
    names = {
        v: k for k, v in vars(tflite.BuiltinOperator).items()
        if not k.startswith("_") and isinstance(v, int)
    }
    root = tflite.Model.GetRootAsModel(buf, 0)
    graph = root.Subgraphs(0)
    result = []
    for i in range(graph.OperatorsLength()):
        code = root.OperatorCodes(graph.Operators(i).OpcodeIndex())
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        result.append(names.get(op, f"BUILTIN_{op}"))
    return result


# ---------------------------------------------------------------------------
# Making untrained networks look trained
# ---------------------------------------------------------------------------


def spread_batchnorm(model, calib_images: np.ndarray, seed: int) -> None:
    """Randomises every BatchNormalization layer, then calibrates its stats.

    gamma ~ U(0.5, 1.5) and beta ~ N(0, 0.2) give each channel its own
    scale and offset; the moving mean/variance are then set to the batch
    statistics of ``calib_images`` (one forward pass in training mode with
    momentum 0), so each layer normalises its real input distribution and
    activations neither explode nor die however deep the network is.
    Finally the moving statistics get a mild random skew (mean shifted by
    N(0, 0.1) standard deviations, variance scaled by U(0.8, 1.25)) so
    the folded conv biases aren't exactly centred either.
    """
    tf = import_tf()
    rng = np.random.default_rng(seed)
    bns = [l for l in all_layers(model) if isinstance(l, tf.keras.layers.BatchNormalization)]
    for bn in bns:
        n = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
        bn.beta.assign(rng.normal(0.0, 0.2, n).astype(np.float32))
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(calib_images, training=True)  # updates moving stats = batch stats
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
        n = bn.gamma.shape[0]
        var = bn.moving_variance.numpy()
        mean = bn.moving_mean.numpy() + rng.normal(0.0, 0.1, n) * np.sqrt(var)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign((var * rng.uniform(0.8, 1.25, n)).astype(np.float32))


def calibrate_classifier(
    model,
    layer,
    calib_images: np.ndarray,
    seed: int,
    logit_std: float = 2.5,
    bias_std: float = 1.0,
) -> None:
    """Re-draws ``model``'s classifier ``layer`` (Dense or 1x1 Conv2D) so its
    logits are lively on ``calib_images``; see :func:`fit_classifier`."""
    tf = import_tf()
    feats = tf.keras.Model(model.input, layer.input)(calib_images, training=False)
    feats = np.asarray(feats).reshape(-1, feats.shape[-1])
    fit_classifier(layer, feats, seed, logit_std, bias_std)


def fit_classifier(
    layer,
    feats: np.ndarray,
    seed: int,
    logit_std: float = 2.5,
    bias_std: float = 1.0,
) -> None:
    """Re-draws a classifier layer's weights given sample inputs ``feats``
    (rows of features).

    Each output unit gets random weights rescaled so that, over ``feats``,
    its pre-activation has standard deviation ``logit_std`` around a random
    mean ~ N(0, ``bias_std``).  A trained ImageNet head behaves alike: the
    winning logit stands a few units above the rest and changes with the
    image.
    """
    rng = np.random.default_rng(seed)
    kernel, _ = layer.get_weights()
    n_in, n_out = kernel.shape[-2], kernel.shape[-1]
    w = rng.normal(0.0, 1.0, (n_in, n_out))
    z = np.asarray(feats, np.float64).reshape(-1, n_in) @ w
    gain = logit_std / np.maximum(z.std(axis=0), 1e-6)
    b = -z.mean(axis=0) * gain + rng.normal(0.0, bias_std, n_out)
    layer.set_weights([(w * gain).reshape(kernel.shape).astype(np.float32), b.astype(np.float32)])


def all_layers(model) -> list:
    """Every layer of ``model``, descending into nested models."""
    result = []
    for layer in model.layers:
        result.append(layer)
        if hasattr(layer, "layers"):
            result.extend(all_layers(layer))
    return result


# ---------------------------------------------------------------------------
# MobileNet builders
# ---------------------------------------------------------------------------

# The op counts of the flagship (MobileNetV2 a=0.35, 96x96, 1000 classes) as TensorFlow's
# converter writes it: 65 ops.
FLAGSHIP_OPS = {"CONV_2D": 35, "DEPTHWISE_CONV_2D": 17, "ADD": 10, "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}

CALIB_COUNT = 16  # images for batch-norm / classifier calibration
REP_COUNT = 24  # images for the converter's representative dataset


def make_mobilenet_v2(
    alpha: float = 0.35,
    input_shape: tuple[int, int, int] = (96, 96, 3),
    classes: int = 1000,
    seed: int = 0,
):
    """Returns a calibrated, untrained ``keras.applications.MobileNetV2``."""
    tf = import_tf()
    reset_keras(seed)
    model = tf.keras.applications.MobileNetV2(
        alpha=alpha, input_shape=input_shape, weights=None, classes=classes
    )
    prepare_untrained(model, input_shape, seed)
    return model


def prepare_untrained(model, input_shape, seed: int, classifier=None) -> None:
    """Spreads batch-norm parameters and calibrates the classifier of ``model``.

    ``classifier`` defaults to the last Dense layer, if any.
    """
    tf = import_tf()
    calib = representative_images(input_shape, CALIB_COUNT, seed + 1000)
    spread_batchnorm(model, calib, seed)
    if classifier is None:
        dense = [l for l in all_layers(model) if isinstance(l, tf.keras.layers.Dense)]
        classifier = dense[-1] if dense else None
    if classifier is not None:
        calibrate_classifier(model, classifier, calib, seed)


def convert_mobilenet(
    model,
    input_shape,
    seed: int = 0,
    input_type: str = "int8",
    output_type: str = "int8",
) -> bytes:
    """Converts a MobileNet-style Keras model with a seeded image dataset."""
    images = representative_images(input_shape, REP_COUNT, seed + 2000)
    return convert_int8(model, representative_dataset(images), input_type, output_type)


def build_default_mobilenet_v2(seed: int = 0) -> bytes:
    """The flagship: MobileNetV2 alpha=0.35, 96x96x3, 1000 classes, int8 I/O."""
    shape = (96, 96, 3)
    model = make_mobilenet_v2(0.35, shape, 1000, seed)
    return convert_mobilenet(model, shape, seed)


# ---------------------------------------------------------------------------
# Looking like a real trained export
# ---------------------------------------------------------------------------


def train_briefly(model, input_shape, classes: int, seed: int, steps: int = 3, momentum: float = 0.9) -> None:
    """A few SGD steps on seeded images with random labels, batch-norm momentum ``momentum``
    (Keras' default fine-tuning value; MobileNetV2 ships with 0.999): the weights and the
    moving statistics move as a real training run moves them, in seconds."""
    tf = import_tf()
    for layer in all_layers(model):
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = momentum
    images = representative_images(input_shape, 8 * steps, seed + 3000)
    labels = np.random.default_rng(seed + 3000).integers(0, classes, len(images))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)


def deaden_channels(model, seed: int, dead: Sequence[Sequence[float]] = ((1e-6, 1.0), (1e-10, 0.0)),
                    near_dead: Sequence[float] = (3e-3, 3e-4)) -> None:
    """Multiplies some batch-norm gammas (and betas) by tiny factors, as training leaves them:
    the stem's first channel and one channel of every expansion by one (gamma, beta) pair of
    ``dead`` in turn (the folded weights' scale then ends far below the others': right shifts
    beyond 22 where the converter keeps a bias representable, a multiplier flushed to 0 where
    the bias is gone too), and one more channel of every expansion by each factor of
    ``near_dead`` (large right shifts, outputs still moving)."""
    tf = import_tf()
    rng = np.random.default_rng(seed + 4000)
    expansions = 0
    for layer in all_layers(model):
        if not isinstance(layer, tf.keras.layers.BatchNormalization):
            continue
        if layer.name == "bn_Conv1":
            factors = {0: dead[0]}
        elif layer.name.endswith("expand_BN"):
            picks = rng.choice(layer.gamma.shape[0], 1 + len(near_dead), replace=False).tolist()
            factors = {picks[0]: dead[expansions % len(dead)], **{c: (f, 1.0) for c, f in zip(picks[1:], near_dead)}}
            expansions += 1
        else:
            continue
        gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
        for channel, (gamma_factor, beta_factor) in factors.items():
            gamma[channel] *= gamma_factor
            beta[channel] *= beta_factor
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)


def explicit_pads(tflite_model: bytes, convolutions: Sequence[str] = ("DEPTHWISE_CONV_2D",)) -> bytes:
    """The converted model with every stride-2 SAME DEPTHWISE_CONV_2D (or op of `convolutions`)
    on an even-sized input rewritten as PAD [[0,0],[0,1],[0,1],[0,0]] + VALID, as older
    converters write Keras' ZeroPadding2D + VALID (Edge Impulse and ST model-zoo exports), and
    litert-torch every stride-2 convolution. Today's converter folds that pair into SAME, which
    pads the same way; TFLite computes both alike."""
    from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
    from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=import-outside-toplevel

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_model))
    graph = model.subgraphs[0]
    pad_code = _opcode_index(model, schema, schema.BuiltinOperator.PAD, version=2)
    padded_ops = {getattr(schema.BuiltinOperator, name) for name in convolutions}
    operators = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        options = op.builtinOptions
        source = graph.tensors[op.inputs[0]]
        if (max(code.builtinCode, code.deprecatedBuiltinCode) in padded_ops and options.strideH == 2
                and options.strideW == 2 and options.padding == schema.Padding.SAME
                and source.shape[1] % 2 == 0 and source.shape[2] % 2 == 0):
            operators.append(_pad_before(model, graph, schema, op, pad_code))
            options.padding = schema.Padding.VALID
        operators.append(op)
    graph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _opcode_index(model, schema, builtin: int, version: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _pad_before(model, graph, schema, op, pad_code: int):
    """A PAD (bottom and right by one) writing a new tensor that `op` then reads."""
    import copy  # pylint: disable=import-outside-toplevel

    source = graph.tensors[op.inputs[0]]
    padded = copy.deepcopy(source)
    padded.name = (source.name.decode() if isinstance(source.name, bytes) else source.name) + "/explicit_pad"
    padded.shape = np.array([source.shape[0], source.shape[1] + 1, source.shape[2] + 1, source.shape[3]],
                            dtype=np.int32)
    padded.shapeSignature = None
    padded.buffer = _new_buffer(model, schema, None)
    paddings = schema.TensorT()
    paddings.name = padded.name + "/paddings"
    paddings.shape = np.array([4, 2], dtype=np.int32)
    paddings.type = schema.TensorType.INT32
    paddings.buffer = _new_buffer(model, schema, np.array([0, 0, 0, 1, 0, 1, 0, 0], dtype="<i4"))
    graph.tensors.extend([padded, paddings])
    pad = schema.OperatorT()
    pad.opcodeIndex = pad_code
    pad.inputs = np.array([op.inputs[0], len(graph.tensors) - 1], dtype=np.int32)
    pad.outputs = np.array([len(graph.tensors) - 2], dtype=np.int32)
    pad.builtinOptionsType = schema.BuiltinOptions.PadOptions
    pad.builtinOptions = schema.PadOptionsT()
    op.inputs[0] = len(graph.tensors) - 2
    return pad


def _new_buffer(model, schema, values) -> int:
    buffer = schema.BufferT()
    if values is not None:
        buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1
