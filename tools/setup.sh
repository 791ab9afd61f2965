#!/usr/bin/env bash
# Install everything mnv2gen's verification, tests and benchmarks need on a fresh Debian
# machine: the host compilers, the Arm cross toolchain and QEMU (for the firmware runs), then
# mnv2gen itself with TensorFlow and TFLite Micro (the oracles) and the test tools. Run as
# root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_apt=""
# The host compilers (C, and C++ for the tests that include the headers from C++), and the
# build tools the generated fragments and the examples are tested with.
for tool in gcc g++ clang make cmake; do
    command -v "$tool" >/dev/null || need_apt="$need_apt $tool"
done
# The firmware (`mnv2gen run`, tests/test_firmware.py): the cross compiler, newlib (only its
# string functions are linked) and QEMU's Cortex-M boards.
command -v arm-none-eabi-gcc >/dev/null || need_apt="$need_apt gcc-arm-none-eabi"
[ -e /usr/lib/arm-none-eabi/newlib/libc.a ] || need_apt="$need_apt libnewlib-arm-none-eabi"
command -v qemu-system-arm >/dev/null || need_apt="$need_apt qemu-system-arm"
# `mnv2gen report --png` and tests/test_reports.py render the HTML report in headless Chromium.
command -v chromium >/dev/null || need_apt="$need_apt chromium"
if [ -n "$need_apt" ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_apt >/dev/null
fi

# Not editable: the installed package must find its templates on its own.
python3 -m pip install --quiet --disable-pip-version-check ".[verify,test]"
