"""Cortex-M firmware for generated models: boards, cross-build and runs under QEMU.

The C side (start-up, the consoles: semihosting or an STM32 USART, the harnesses, linker
scripts in ld/) and the QEMU plugin
(insn_count.c) ship in this package; `mnv2gen.verification.board` ties them to the compiler and the
TFLite oracle.
"""
