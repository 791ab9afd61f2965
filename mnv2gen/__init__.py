"""mnv2gen: int8 MobileNet .tflite -> static, dependency-free C, proven bit-exact against TFLite."""

__version__ = "0.1.0"
