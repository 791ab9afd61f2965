"""The cores mnv2gen generates C for, and the compiler flags that C is built with, defined
once: the generated CMake/Make fragments, the firmware builds and the host builds all read
them from here."""

from __future__ import annotations

TARGETS = ("host", "cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85")

# What arm-none-eabi-gcc needs to know of each Cortex-M core (after -mthumb). The first flag
# selects the core's instructions (the generated C's #error names it when they are missing).
CORE_FLAGS = {
    # Armv6-M: no DSP extension, no FPU, no 32x32->64 multiply (libgcc does 64-bit products).
    "cortex-m0plus": ("-mcpu=cortex-m0plus", "-mfloat-abi=soft"),
    "cortex-m4": ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
    "cortex-m7": ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
    # Armv8-M Mainline with the DSP extension and a single-precision FPU (as on the STM32U5
    # and the nRF5340): the Cortex-M4's SIMD instructions.
    "cortex-m33": ("-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
    # -mcpu=cortex-m55 brings its FPU and MVE (Helium) with it.
    "cortex-m55": ("-mcpu=cortex-m55", "-mfloat-abi=hard"),
    # arm-none-eabi-gcc 12 has no -mcpu=cortex-m85 (GCC 13 has): its architecture instead,
    # Armv8.1-M with Helium (integer and float) and a double-precision FPU.
    "cortex-m85": ("-march=armv8.1-m.main+mve.fp+fp.dp", "-mfloat-abi=hard"),
}

# The cores with a floating-point unit: ONNX models' float32 output stage runs on it. The
# others (and C for them, wherever it is built) take ONNX Runtime's output stage in integers,
# proven equal at compile time (codegen/kernels.OutputStage.ORT_INTEGER, mnv2gen/ort_integer.py).
FPU_TARGETS = frozenset(("host", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85"))


def has_fpu(target: str) -> bool:
    """Whether `target`'s core computes in float32 in hardware."""
    return target in FPU_TARGETS


def cpu_flags(target: str) -> tuple[str, ...]:
    """The flags that select `target`'s instructions ("host": none)."""
    return () if target == "host" else ("-mthumb", *CORE_FLAGS[target])


def core_flag(target: str) -> str:
    """The one flag that selects `target`'s instruction set (-mcpu=, or -march= where GCC 12
    does not know the core)."""
    return CORE_FLAGS[target][0]


# The generated C is clean under these with gcc and clang; every build of it uses them.
C_WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")

# ONNX models' C rounds every float operation as ONNX Runtime does: no multiply and add
# contracted into one fused, once-rounded operation. Every build of generated C uses it
# (the host's, the firmware's, and the fragments for ONNX models).
C_FLOAT_FLAGS = ("-ffp-contract=off",)


def gcc_for(target: str, cpp: bool = False) -> str:
    """The GCC driver that builds for `target`: the host's, or the Arm cross compiler."""
    driver = "g++" if cpp else "gcc"
    return driver if target == "host" else f"arm-none-eabi-{driver}"
