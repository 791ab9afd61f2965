#!/usr/bin/env python3
"""Trains the demo model: MobileNetV2 alpha=0.35, 96x96x3, on scikit-learn's digits.

    python tools/train_default_model.py [--epochs N] [--seed N] [--out models]

Trains from scratch with TensorFlow on the 1,797 8x8 handwritten digits that ship inside
scikit-learn, upscaled to 96x96 RGB, with a stratified held-out test split and light
augmentation, converts the result to a full-int8 .tflite (int8 input and output) with a
representative dataset, and writes into --out:

    mobilenet_v2_035_96_digits.tflite   the model (10 classes)
    digits_labels.txt                   one label per line, in output order
    digits_test.npz                     the test split, quantized exactly as the model's
                                        input: x (int8, N x 96 x 96 x 1: the grey channel,
                                        which the model's 3 channels copy), y (labels)
    digits_test_images/*.png            a few test images as the model sees them
    digits_model.md                     accuracy, split and training time of this run

It needs `pip install ".[verify,train]"` (TensorFlow and scikit-learn). It takes a few
minutes on two CPU cores; it is a script, not part of the tests.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

import model_builders as mb

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = 96
CLASSES = 10
TEST_FRACTION = 0.2
REP_COUNT = 200  # training images the converter calibrates activation ranges on
PNG_COUNT = 10
MODEL_NAME = "mobilenet_v2_035_96_digits.tflite"


def load_split(seed: int):
    """The digits as float images in [-1, 1] (MobileNet's input range), still 8x8, split into
    train and test with every class in the same proportion in both."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0) * 2.0 - 1.0
    return train_test_split(images[..., None], digits.target.astype(np.int64), test_size=TEST_FRACTION,
                            stratify=digits.target, random_state=seed)


def upscale(tf, images):
    """8x8x1 -> 96x96x3: bilinear, the grey value copied into each colour channel."""
    return tf.image.grayscale_to_rgb(tf.image.resize(images, (SIZE, SIZE), method="bilinear"))


def training_data(tf, keras, x, y, seed: int, batch: int):
    # Light augmentation: digits moved, turned and scaled a little. Flips would turn a 2
    # into something else, so none.
    augment = keras.Sequential([
        keras.layers.RandomTranslation(0.08, 0.08, fill_value=-1.0, seed=seed),
        keras.layers.RandomRotation(0.04, fill_value=-1.0, seed=seed + 1),
        keras.layers.RandomZoom(0.1, fill_value=-1.0, seed=seed + 2),
    ])
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch)
    return data.map(lambda a, b: (augment(upscale(tf, a), training=True), b),
                    num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def build_model(keras):
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, weights=None,
                                           classes=CLASSES, classifier_activation="softmax")
    # Keras's default momentum of 0.999 makes the moving statistics lag far behind the
    # weights on a data set this small, and evaluation (which uses them) collapses.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def train(tf, keras, x_train, y_train, epochs: int, seed: int):
    model = build_model(keras)
    batch = 32
    steps = epochs * int(np.ceil(len(x_train) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(training_data(tf, keras, x_train, y_train, seed, batch), epochs=epochs, verbose=2)
    return model


def quantize_input(images: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float images -> the int8 values the model's input expects (TFLite's QUANTIZE rounding)."""
    return np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)


def int8_accuracy(tf, model_bytes: bytes, x_int8: np.ndarray, y: np.ndarray, reference: bool) -> float:
    """Test accuracy of the .tflite with TFLite's reference kernels (the arithmetic mnv2gen's C
    equals) or its default optimized ones, which round differently in places."""
    resolver = tf.lite.experimental.OpResolverType
    interpreter = tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=resolver.BUILTIN_REF if reference else resolver.AUTO)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    hits = 0
    for image, label in zip(x_int8, y):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
    return hits / len(y)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG, written by hand so the script needs no imaging library."""
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb.astype(np.uint8))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def write_test_images(folder: Path, x_float: np.ndarray, y: np.ndarray) -> list[str]:
    """One image per class, as the model sees it (96x96 RGB), named after its label."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for label in range(min(PNG_COUNT, CLASSES)):
        index = int(np.flatnonzero(y == label)[0])
        name = f"test{index:03d}_label{label}.png"
        pixels = np.round((x_float[index] + 1.0) * 127.5)
        (folder / name).write_bytes(png_bytes(pixels))
        names.append(name)
    return names


def write_note(path: Path, facts: dict) -> None:
    path.write_text(f"""# The demo model: MobileNetV2 alpha=0.35, 96x96x3, on handwritten digits

`{MODEL_NAME}` is MobileNetV2 (Keras, alpha=0.35, 96x96x3 input, 10
classes, softmax), trained from scratch by `tools/train_default_model.py` on scikit-learn's digits (1,797 8x8
grey images of 0-9, upscaled bilinearly to 96x96 and copied into three channels, values in
[-1, 1]), then converted by TensorFlow {facts['tf_version']}'s TFLite converter to full int8 with
int8 input and output, calibrated on {REP_COUNT} training images.

| | |
|---|---|
| split | stratified, seed {facts['seed']}: {facts['train']} training, {facts['test']} held-out test images |
| augmentation | random translation (8%), rotation (4% of a turn), zoom (10%) |
| training | {facts['epochs']} epochs, Adam with cosine decay, batch-norm momentum 0.9 |
| training time | {facts['train_seconds']:.0f} s on {facts['cores']} CPU cores |
| float test accuracy | {100 * facts['float_acc']:.2f}% |
| int8 test accuracy (.tflite, TFLite's reference kernels, as the generated C) | {100 * facts['int8_acc']:.2f}% |
| int8 test accuracy (.tflite, TFLite's default optimized kernels) | {100 * facts['int8_fast_acc']:.2f}% |
| model input | int8, scale {facts['scale']!r}, zero point {facts['zero_point']} |

`digits_test.npz` holds the held-out test split already quantized to the model's int8 input
(`x`, N x 96 x 96 x 1: one channel, since the three input channels are copies of it) with its
labels (`y`), so `mnv2gen demo` needs neither scikit-learn nor TensorFlow to feed it to the
generated C. The two int8 figures differ because TFLite's optimized kernels round some
intermediate results differently from its reference kernels; mnv2gen is bit-exact with the
reference ones. `digits_test_images/` shows one test image per
class, named after its index in the split and its label. `digits_labels.txt` lists the
labels in output order.
""")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models")
    args = parser.parse_args(argv)

    tf = mb.import_tf()
    import keras
    import os

    keras.utils.set_random_seed(args.seed)
    x_train, x_test, y_train, y_test = load_split(args.seed)
    start = time.perf_counter()
    model = train(tf, keras, x_train, y_train, args.epochs, args.seed)
    train_seconds = time.perf_counter() - start

    test_float = upscale(tf, x_test).numpy()
    float_acc = float(np.mean(np.argmax(model.predict(test_float, verbose=0), axis=1) == y_test))
    rep = upscale(tf, x_train[:REP_COUNT]).numpy()
    model_bytes = mb.convert_int8(model, mb.representative_dataset(rep))
    scale, zero_point = tf.lite.Interpreter(model_content=model_bytes).get_input_details()[0]["quantization"]
    test_int8 = quantize_input(test_float, scale, zero_point)
    int8_acc = int8_accuracy(tf, model_bytes, test_int8, y_test, reference=True)
    int8_fast_acc = int8_accuracy(tf, model_bytes, test_int8, y_test, reference=False)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    mb.atomic_write(out / MODEL_NAME, model_bytes)
    (out / "digits_labels.txt").write_text("".join(f"{label}\n" for label in range(CLASSES)))
    # The three channels are copies of one grey value (and the input scale is per tensor), so
    # one channel is stored: a third of the size. The demo copies it back into three.
    np.savez_compressed(out / "digits_test.npz", x=test_int8[..., :1], y=y_test.astype(np.uint8))
    write_test_images(out / "digits_test_images", test_float, y_test)
    write_note(out / "digits_model.md", dict(
        tf_version=tf.__version__, seed=args.seed, train=len(y_train), test=len(y_test),
        epochs=args.epochs, train_seconds=train_seconds, cores=os.cpu_count(), float_acc=float_acc,
        int8_acc=int8_acc, int8_fast_acc=int8_fast_acc, scale=float(scale), zero_point=int(zero_point)))
    print(f"float test accuracy {100 * float_acc:.2f}%, int8 {100 * int8_acc:.2f}% (reference kernels; "
          f"{100 * int8_fast_acc:.2f}% with the optimized ones) "
          f"({len(y_test)} images); trained in {train_seconds:.0f} s; wrote {out / MODEL_NAME} "
          f"({len(model_bytes):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
