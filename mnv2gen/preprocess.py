"""Fused preprocessing of streamed input (`--input rows --input-format ... --normalize ...`).

The caller's fill function then writes sensor pixels (uint8 per channel), and the generated
C turns them into the model's int8 input through one compile-time table per channel. The
reference it equals, bit for bit, is defined here and nowhere else:

  1. normalize, in float32, each operation rounded to float32 in the order written:
     n = ((float32(x) - mean_c) / divisor_c) - offset
     ("x/255": mean 0, divisor 255, offset 0; "(x/127.5)-1": divisor 127.5, offset 1;
     "mean=M1,M2,M3;std=S1,S2,S3": (x - M_c) / S_c; subtracting a zero is exact);
  2. the model's input QUANTIZE, as TFLite's AffineQuantize: q = clamp(roundf(n / scale) + zp,
     -128, 127), the division in float32, roundf rounding halves away from zero.

x is the pixel's byte for the channel: rgb888 R, G, B and bgr888 B, G, R for the model's
channels 0, 1, 2; gray8's one byte for every channel; rgb565 a little-endian 16-bit word, R in
bits 15..11, G in 10..5, B in 4..0, each widened to 8 bits by repeating its top bits
(r8 = r5 << 3 | r5 >> 2, g8 = g6 << 2 | g6 >> 4); yuv422 two pixels in four bytes Y0 U Y1 V
(YUYV), converted to R, G, B by BT.601 full range (JPEG's) in 16-bit fixed point (`yuv_to_rgb`).
Since x takes 256 values per channel, the tables are the reference, evaluated once per value.

With `--input-scale-from WxH` the fill function delivers a larger (or smaller) sensor frame
and x is first resized to the model's input, on the 8-bit x of each channel, in fixed point
(`Scale`): the pixel centres map as source = (dst + 0.5) * S / D - 0.5, in 1/256ths of a pixel;
nearest takes one source pixel, bilinear blends the 2x2 around it with 8-bit weights.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

from . import ir
from .plan.streaming import SensorRows


class PixelFormat(enum.StrEnum):
    RGB888 = "rgb888"  # R, G, B bytes per pixel: the model's channels 0, 1, 2
    BGR888 = "bgr888"  # B, G, R bytes per pixel
    RGB565 = "rgb565"  # a little-endian 16-bit word per pixel: R 5 bits, G 6, B 5
    GRAY8 = "gray8"  # one byte per pixel, fed to every channel of the model
    YUV422 = "yuv422"  # YUYV: Y0 U Y1 V bytes for two pixels, U and V shared (BT.601 full range)

    @property
    def channels(self) -> int:
        """Bytes per pixel."""
        return {PixelFormat.RGB565: 2, PixelFormat.YUV422: 2, PixelFormat.GRAY8: 1}.get(self, 3)

    @property
    def decoded_channels(self) -> int:
        """Bytes per pixel once decoded to x: gray8's one byte, else R, G and B."""
        return 1 if self is PixelFormat.GRAY8 else 3

    def bytes_of_channels(self, pixels: np.ndarray, channels: int) -> np.ndarray:
        """x per model channel, uint8 [..., channels], of uint8 pixels [..., bytes per pixel]."""
        if self is PixelFormat.GRAY8:
            return np.repeat(pixels, channels, axis=-1)
        if self is PixelFormat.BGR888:
            return pixels[..., ::-1]
        if self is PixelFormat.RGB565:
            word = pixels[..., 0].astype(np.uint32) | (pixels[..., 1].astype(np.uint32) << 8)
            r, g, b = word >> 11, (word >> 5) & 63, word & 31
            return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], axis=-1).astype(np.uint8)
        if self is PixelFormat.YUV422:  # pixels [..., W, 2]: (Y0, U), (Y1, V), ...
            u = np.repeat(pixels[..., 0::2, 1], 2, axis=-1)
            v = np.repeat(pixels[..., 1::2, 1], 2, axis=-1)
            return yuv_to_rgb(pixels[..., 0], u, v)
        return pixels


# BT.601 full range (JPEG/JFIF), the coefficients 1.402, 0.344136, 0.714136 and 1.772 in units
# of 2^-16, rounded to nearest: the fixed point the C uses, so this is the definition.
YUV_COEFFICIENTS = {"r_v": 91881, "g_u": 22554, "g_v": 46802, "b_u": 116130}


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uint8 R, G, B [..., 3] of uint8 Y, U, V: each channel clamp((Y * 2^16 + terms + 2^15) >> 16,
    0, 255) with u = U - 128, v = V - 128, R's term 91881 v, G's -22554 u - 46802 v, B's 116130 u
    (>> floors; a negative sum clamps to 0 either way)."""
    k = YUV_COEFFICIENTS
    y, u, v = (a.astype(np.int64) for a in (y, u, v))
    u, v = u - 128, v - 128
    terms = (k["r_v"] * v, -k["g_u"] * u - k["g_v"] * v, k["b_u"] * u)
    return np.stack([np.clip(((y << 16) + t + (1 << 15)) >> 16, 0, 255) for t in terms], axis=-1).astype(np.uint8)


class Resize(enum.StrEnum):
    NEAREST = "nearest"  # the source pixel whose centre is nearest (rounding half up)
    BILINEAR = "bilinear"  # the 2x2 source pixels around the centre, weighted in 1/256ths


WEIGHT_BITS = 8  # bilinear weights and source positions in 1/256ths of a pixel
MAX_SENSOR_SIDE = 4096  # the C's tables hold sensor byte offsets (3 a pixel) in 16 bits


@dataclass(frozen=True)
class Axis:
    """How one axis of the model's input takes the sensor's: destination d blends source
    first[d] with weight 256 - weight[d] and second[d] with weight[d]."""

    first: tuple[int, ...]
    second: tuple[int, ...]
    weight: tuple[int, ...]


@dataclass(frozen=True)
class Scale:
    """--input-scale-from WxH: the sensor frame's size, and --input-resize."""

    width: int
    height: int
    resize: Resize = Resize.BILINEAR

    @classmethod
    def parse(cls, text: str, resize: str = Resize.BILINEAR) -> "Scale":
        match = re.fullmatch(r"([0-9]{1,5})[xX*]([0-9]{1,5})", text.strip())
        if not match or not all(1 <= int(n) <= MAX_SENSOR_SIDE for n in match.groups()):
            raise ValueError(f"cannot read the sensor size {text[:40]!r}: give WIDTHxHEIGHT, each 1 to "
                             f"{MAX_SENSOR_SIDE}, e.g. 160x120")
        return cls(int(match.group(1)), int(match.group(2)), Resize(resize))

    def axis(self, source: int, target: int) -> Axis:
        """The source pixels and weights of every destination pixel along one axis.
        nearest: i = min(floor((2d + 1) * S / 2D), S - 1), weight 0. bilinear: the source
        position in 1/256ths, s = floor(((2d + 1) * S * 256 + D) / 2D) - 128 (that is
        (d + 0.5) * S / D - 0.5, rounded half up), clamped to 0..(S - 1) * 256; first = s >> 8,
        second = min(first + 1, S - 1), weight = s & 255."""
        d = np.arange(target, dtype=np.int64)
        if self.resize is Resize.NEAREST:
            first = np.minimum((2 * d + 1) * source // (2 * target), source - 1)
            return Axis(tuple(first.tolist()), tuple(first.tolist()), (0,) * target)
        one = 1 << WEIGHT_BITS
        s = ((2 * d + 1) * source * one + target) // (2 * target) - one // 2
        s = np.clip(s, 0, (source - 1) * one)
        first = s >> WEIGHT_BITS
        return Axis(tuple(first.tolist()), tuple(np.minimum(first + 1, source - 1).tolist()), tuple((s & (one - 1)).tolist()))

    def resized(self, x: np.ndarray, height: int, width: int) -> np.ndarray:
        """uint8 x [..., sensor height, sensor width, C] at [..., height, width, C]: with the
        axes' weights wy, wx, v = ((x00 (256 - wx) + x01 wx) (256 - wy) + (x10 (256 - wx) + x11 wx) wy
        + 2^15) >> 16 (nearest: weights 0, so v = x00)."""
        rows, columns = self.axis(self.height, height), self.axis(self.width, width)
        x = x.astype(np.int64)
        one = 1 << WEIGHT_BITS
        wx = np.array(columns.weight).reshape(-1, 1)
        wy = np.array(rows.weight).reshape(-1, 1, 1)

        def across(r: tuple[int, ...]) -> np.ndarray:
            picked = x[..., list(r), :, :]
            return picked[..., list(columns.first), :] * (one - wx) + picked[..., list(columns.second), :] * wx

        blended = across(rows.first) * (one - wy) + across(rows.second) * wy
        return ((blended + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)).astype(np.uint8)


_NUMBER = r"[0-9]+(?:\.[0-9]*)?"
_FORMS = (  # (pattern, how its numbers make (mean, divisor, offset))
    (rf"x", lambda: (0.0, 1.0, 0.0)),
    (rf"x/({_NUMBER})", lambda d: (0.0, d, 0.0)),
    (rf"\(?x/({_NUMBER})\)?-({_NUMBER})", lambda d, o: (0.0, d, o)),
    (rf"\(x-({_NUMBER})\)/({_NUMBER})", lambda m, d: (m, d, 0.0)),
)
_PER_CHANNEL = re.compile(rf"mean=({_NUMBER}(?:,{_NUMBER})*);std=({_NUMBER}(?:,{_NUMBER})*)")


@dataclass(frozen=True)
class Normalize:
    """n = ((x - mean[c]) / divisor[c]) - offset, in float32 (see the module's docstring)."""

    mean: tuple[float, ...] = (0.0,)
    divisor: tuple[float, ...] = (1.0,)
    offset: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Normalize":
        """One of: x, x/D, x/D-O, (x/D)-O, (x-M)/D, mean=M1,M2,M3;std=S1,S2,S3. ValueError otherwise."""
        spec = text.replace(" ", "")
        for pattern, make in _FORMS:
            match = re.fullmatch(pattern, spec)
            if match:
                mean, divisor, offset = make(*map(float, match.groups()))
                return cls._checked((mean,), (divisor,), offset)
        match = _PER_CHANNEL.fullmatch(spec)
        if match:
            means, stds = (tuple(map(float, g.split(","))) for g in match.groups())
            return cls._checked(means, stds, 0.0)
        raise ValueError(f"cannot read the normalization {text[:60]!r}: use x/255, (x/127.5)-1, (x-127.5)/127.5 "
                         "or mean=M1,M2,M3;std=S1,S2,S3")

    @classmethod
    def _checked(cls, mean, divisor, offset) -> "Normalize":
        if min(divisor) <= 0:
            raise ValueError("the normalization divides by zero")
        if len(mean) != len(divisor):
            raise ValueError(f"the normalization gives {len(mean)} means but {len(divisor)} deviations")
        return cls(tuple(mean), tuple(divisor), offset)

    def channel(self, values: tuple[float, ...], c: int) -> np.float32:
        return np.float32(values[c] if len(values) > 1 else values[0])

    def canonical(self) -> str:
        """The normalization as --normalize reads it, from its numbers alone."""
        if len(self.mean) > 1 or len(self.divisor) > 1:
            return f"mean={','.join(map(repr, self.mean))};std={','.join(map(repr, self.divisor))}" + (
                f" (offset {self.offset!r})" if self.offset else "")
        return f"((x-{self.mean[0]!r})/{self.divisor[0]!r})-{self.offset!r}"


@dataclass(frozen=True)
class Preprocess:
    """What the fill function delivers, and how it becomes the model's input."""

    format: PixelFormat
    normalize: Normalize
    scale: Scale | None = None  # --input-scale-from: fill delivers a sensor frame of this size

    def sensor_shape(self, t: ir.Tensor) -> tuple[int, int]:
        """(rows, columns) of what fill delivers for the model's input `t`."""
        return (self.scale.height, self.scale.width) if self.scale else tuple(t.shape[1:3])

    def ring_channels(self) -> int:
        """Bytes a sensor pixel takes in the sensor ring: fill's, then decoded in place."""
        return max(self.format.channels, self.format.decoded_channels)

    def sensor_rows(self, t: ir.Tensor) -> SensorRows | None:
        """The planner's view of the sensor rows (--input-scale-from), or None: fill writes
        the input's rows themselves."""
        if self.scale is None:
            return None
        rows = self.scale.axis(self.scale.height, t.shape[1])
        sensor = ir.Tensor("sensor rows", (1, self.scale.height, self.scale.width, self.ring_channels()), "uint8")
        return SensorRows(sensor, tuple(zip(rows.first, rows.second)))

    def check(self, t: ir.Tensor) -> None:
        """ValueError unless the model's input can take these pixels."""
        channels = t.shape[-1]
        if t.dtype != "int8" or t.quant is None:
            raise ValueError(f"--input-format needs an int8 quantized input; {t.name!r} is {t.dtype}")
        if self.format is not PixelFormat.GRAY8 and channels != 3:
            raise ValueError(f"--input-format {self.format} needs a 3-channel input; {t.name!r} has {channels}")
        if self.format is PixelFormat.YUV422 and self.sensor_shape(t)[1] % 2:
            raise ValueError(f"--input-format yuv422 pairs pixels: the sensor width {self.sensor_shape(t)[1]} "
                             "must be even")
        for values in (self.normalize.mean, self.normalize.divisor):
            if len(values) not in (1, channels):
                raise ValueError(f"the normalization gives {len(values)} values for {channels} channels")

    def reference(self, pixels: np.ndarray, t: ir.Tensor) -> np.ndarray:
        """The model's int8 input for uint8 pixels [..., sensor H, sensor W, format bytes]: the
        definition (decode, resize if --input-scale-from, normalize, quantize)."""
        x = self.format.bytes_of_channels(pixels, t.shape[-1])
        if self.scale is not None:
            x = self.scale.resized(x, *t.shape[1:3])
        return self._quantized(x, t)

    def _quantized(self, values: np.ndarray, t: ir.Tensor) -> np.ndarray:
        """Steps 1-3 on x, uint8 [..., channels of the model]."""
        channels = t.shape[-1]
        x = values.astype(np.float32)
        c = np.arange(channels)
        mean = np.array([self.normalize.channel(self.normalize.mean, i) for i in c], dtype=np.float32)
        divisor = np.array([self.normalize.channel(self.normalize.divisor, i) for i in c], dtype=np.float32)
        n = ((x - mean) / divisor) - np.float32(self.normalize.offset)
        v = (n / np.float32(t.scale)).astype(np.float64)  # the float32 quotient, exactly
        # roundf: halves away from zero. In float64, |v| + 0.5 is exact (float32 values < 2^52),
        # where float32 would round 0.49999997 + 0.5 up to 1.
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + t.zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def random_frames(self, t: ir.Tensor, count: int, seed: int = 0) -> np.ndarray:
        """`count` random uint8 frames of this format for input `t`, then all-0 and all-255."""
        shape = (*self.sensor_shape(t), self.format.channels)
        random = np.random.default_rng(seed).integers(0, 255, size=(count, *shape), endpoint=True, dtype=np.uint8)
        return np.concatenate([random, np.zeros((1, *shape), np.uint8), np.full((1, *shape), 255, np.uint8)])

    def tables(self, t: ir.Tensor) -> np.ndarray:
        """[channels, 256] int8: the reference for every pixel value, channel by channel."""
        values = np.repeat(np.arange(256, dtype=np.uint8).reshape(256, 1), t.shape[-1], axis=1)
        return np.ascontiguousarray(self._quantized(values, t).T)
