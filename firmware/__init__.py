"""Cortex-M firmware for generated models: boards, cross-build and runs under QEMU.

The C side (start-up, semihosting, harness, linker scripts in ld/) and the QEMU plugin
(insn_count.c) ship in this package; `mnv2gen.verification.board` ties them to the compiler and the
TFLite oracle.
"""
