"""The cores beyond the M4/M7/M55: Cortex-M33 (Armv8-M Mainline with the DSP extension: the
DSP kernels, on QEMU's mps2-an505), Cortex-M0+ (Armv6-M: the portable kernels, run on QEMU's
Cortex-M3 board mps2-an385, a stand-in whose instruction set contains Armv6-M's) and
Cortex-M85 (Helium; no QEMU board emulates it: built with its architecture's flags, and that
image run on the M55, the same architecture, as a stand-in).

Bit-exact against TFLite with the instruction counts of one inference; the Armv6-M image is
disassembled to prove it holds no instruction a Cortex-M0+ lacks, since QEMU's M3 would run
one silently.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

import model_zoo
from conftest import require_tools
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware.boards import BOARDS, emulated_board
from mnv2gen.firmware.build import build_firmware
from mnv2gen.targets import cpu_flags, gcc_for
from mnv2gen.verification.board import run_on_board
from test_firmware import TOOLS, model_path

M33, M0PLUS_ON_M3, M55 = "mps2-an505", "mps2-an385", "mps3-an547"


@pytest.fixture(autouse=True)
def toolchain():
    require_tools(*TOOLS, "arm-none-eabi-objdump")


def run(name: str, board, out_dir, target: str | None = None, **kwargs):
    path = model_path(name)
    result = compile_model(path, Options(target=target or board.core))
    write_files(result.files, out_dir)
    return run_on_board(path, result, out_dir, board, count=1, per_layer=False, **kwargs)


def assert_bit_exact(report) -> None:
    assert report.bit_exact, f"{report.matched}/{report.inputs} outputs identical on {report.board.name}"
    assert report.inputs == 3 and report.instructions_per_inference > 0
    assert 0 < report.stack_bytes < report.sizes["stack_reserved_bytes"] // 2


def test_each_core_has_its_board():
    assert BOARDS[M33].core == "cortex-m33" and BOARDS[M0PLUS_ON_M3].core == "cortex-m0plus"
    assert emulated_board("cortex-m33").name == M33 and emulated_board("cortex-m0plus").name == M0PLUS_ON_M3
    assert emulated_board("cortex-m85") is None
    # The stand-in says what it is.
    assert "Cortex-M3" in BOARDS[M0PLUS_ON_M3].stand_in and BOARDS[M33].stand_in is None


# The flagship: on the M33 with the DSP kernels (its instructions are the M4's, its count a few
# thousand apart), on the M0+ with the portable ones. Instruction counts measured on this tree.
def test_flagship_on_the_cortex_m33_dsp_kernels(out_dir):
    report = run("default", BOARDS[M33], out_dir)
    assert_bit_exact(report)
    assert "#if !defined(__ARM_FEATURE_DSP)" in (out_dir / "mnv2_kernels.c").read_text()
    assert report.instructions_per_inference < 25_000_000  # the M4's: 24.4 M


def test_flagship_on_armv6m(out_dir):
    report = run("default", BOARDS[M0PLUS_ON_M3], out_dir)
    assert_bit_exact(report)
    assert report.summary()["stand_in"] == BOARDS[M0PLUS_ON_M3].stand_in


@pytest.mark.full
@pytest.mark.parametrize("board", [M33, M0PLUS_ON_M3])
@pytest.mark.parametrize("name", list(model_zoo.MODELS))
def test_every_fixture_is_bit_exact(name, board, out_dir):
    assert_bit_exact(run(name, BOARDS[board], out_dir))


# What Armv6-M has of Thumb-2's 32-bit instructions; every other instruction is a 16-bit one,
# and of those CBZ/CBNZ and IT are Armv7-M's only.
ARMV6M_WIDE = {"bl", "mrs", "msr", "dsb", "dmb", "isb", "udf.w"}
ARMV7M_NARROW = re.compile(r"^(cbn?z|it[et]{0,3})$")


def mnemonics(elf, *objdump_flags: str) -> tuple[set[str], set[str]]:
    """The mnemonics of 32-bit and of 16-bit instructions in the ELF's code."""
    listing = subprocess.run(["arm-none-eabi-objdump", "-d", *objdump_flags, str(elf)], check=True,
                             capture_output=True, text=True).stdout
    wide, narrow = set(), set()
    for encoding, mnemonic in re.findall(r"^\s+[0-9a-f]+:\t([0-9a-f]{4}(?: [0-9a-f]{4})?) *\t(\S+)", listing, re.M):
        (wide if " " in encoding else narrow).add(mnemonic.removesuffix(".n"))
    return wide, narrow


def callers(elf, callee: str) -> set[str]:
    """The functions of the ELF with a call to a function whose whole name matches the regular
    expression `callee` (a plain name matches itself)."""
    listing = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], check=True, capture_output=True,
                             text=True).stdout
    found, current = set(), None
    for line in listing.splitlines():
        start = re.match(r"^[0-9a-f]+ <(\S+)>:$", line)
        if start:
            current = start[1]
        elif re.search(rf"\tbl\s.*<{callee}>$", line):
            found.add(current)
    return found


def test_the_armv6m_image_has_only_armv6m_instructions(tmp_path):
    """QEMU's Cortex-M3 would run an Armv7-M instruction without a word: the image's code (the
    model, the kernels, the harness and newlib's and libgcc's Armv6-M builds) is checked here."""
    compile_dir = tmp_path / "c"
    write_files(compile_model(model_path("mnv1_a025_96_c10"), Options(target="cortex-m0plus")).files, compile_dir)
    firmware = build_firmware(compile_dir, "mnv2", BOARDS[M0PLUS_ON_M3], tmp_path / "fw")
    wide, narrow = mnemonics(firmware.elf)
    assert wide <= ARMV6M_WIDE, wide - ARMV6M_WIDE
    assert not [m for m in narrow if ARMV7M_NARROW.match(m)]
    # No libgcc 64-bit multiply in the convolutions' output stage (32-bit multiplies instead;
    # the per-channel fully connected head's single rounding keeps its int64 product).
    assert not callers(firmware.elf, "__aeabi_lmul") & {"mnv2_produce_next_row", "mnv2_conv_pixels"}
    # And the check itself sees Armv7-M code for what it is.
    m3 = dataclasses.replace(BOARDS["mps2-an386"], core="cortex-m4")
    write_files(compile_model(model_path("mnv1_a025_96_c10"), Options(target="cortex-m4")).files, tmp_path / "m4")
    assert not mnemonics(build_firmware(tmp_path / "m4", "mnv2", m3, tmp_path / "fw4").elf)[0] <= ARMV6M_WIDE


def test_c_for_a_core_built_for_another_names_the_flag(tmp_path):
    """The #error of C built without its kernels' instructions names the flag to build with:
    for the Cortex-M85, which GCC 12 knows by its architecture only, that is -march=."""
    for target, wrong in (("cortex-m33", "cortex-m0plus"), ("cortex-m85", "cortex-m4")):
        write_files(compile_model(model_path("mnv1_a025_96_c10"), Options(target=target)).files, tmp_path / target)
        built = subprocess.run([gcc_for(wrong), *cpu_flags(wrong), "-E", str(tmp_path / target / "mnv2_kernels.c")],
                               capture_output=True, text=True)
        assert built.returncode != 0
        assert f"compile with {cpu_flags(target)[1]}," in built.stderr, built.stderr


def test_cortex_m85_builds_the_helium_kernels(out_dir, tmp_path):
    """No QEMU board emulates a Cortex-M85: its C (the Helium kernels) is built with GCC 12's
    flags for its architecture, Armv8.1-M with MVE and a double-precision FPU, and that image
    runs on QEMU's Cortex-M55 (the same architecture) as a stand-in, bit-exact."""
    assert cpu_flags("cortex-m85")[1] == "-march=armv8.1-m.main+mve.fp+fp.dp"
    on_m55 = dataclasses.replace(BOARDS[M55], core="cortex-m85",
                                 stand_in="the Cortex-M85's build, run on QEMU's Cortex-M55")
    report = run("default", on_m55, out_dir, target="cortex-m85")
    assert_bit_exact(report)
    assert "#if !defined(__ARM_FEATURE_MVE)" in (out_dir / "mnv2_kernels.c").read_text()
    kernels = subprocess.run([gcc_for("cortex-m85"), *cpu_flags("cortex-m85"), "-O2", "-c", "-I", str(out_dir),
                              str(out_dir / "mnv2_kernels.c"), "-o", str(tmp_path / "kernels.o")],
                             capture_output=True, text=True)
    assert kernels.returncode == 0, kernels.stderr
    # objdump disassembles MVE only when told the architecture, and spells VMLADAVA VMLAVA.
    wide, _ = mnemonics(tmp_path / "kernels.o", "-marmv8.1-m.main")
    assert {"vmlava.s8", "vctp.8"} <= wide, "no Helium dot product in the M85's kernels"


HIGH_MUL_CHECK = r"""
#include "mnv2_kernels.c"
#include <stdio.h>

/* The other cores' form, which TFLite's equals. */
static int32_t with_int64(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

static uint64_t state = 0x9E3779B97F4A7C15u;
static int32_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (int32_t)(uint32_t)state;
}

int main(void)
{
    /* Both halves' extremes and their neighbours, every carry and sign boundary. */
    static const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, -1073741825, -1073741824, -65537, -65536,
                                    -65535, -32769, -32768, -32767, -2, -1, 0, 1, 2, 32767, 32768, 32769,
                                    65535, 65536, 65537, 1073741823, 1073741824, INT32_MAX - 1, INT32_MAX};
    const int count = (int)(sizeof edges / sizeof edges[0]);
    long wrong = 0, checked = 0;
    for (int i = 0; i < count; i++) {
        for (int j = 0; j < count; j++, checked++) {
            wrong += mnv2_saturating_rounding_doubling_high_mul(edges[i], edges[j]) != with_int64(edges[i], edges[j]);
        }
    }
    for (long k = 0; k < 20000000; k++, checked++) {
        /* Random words, and random small ones (accumulators) times multipliers in [2^30, 2^31). */
        const int32_t a = k & 1 ? next() : next() >> (next() & 31);
        const int32_t b = k & 2 ? next() : (int32_t)(((uint32_t)next() >> 1) | 0x40000000u);
        wrong += mnv2_saturating_rounding_doubling_high_mul(a, b) != with_int64(a, b);
    }
    printf("%ld %ld\n", checked, wrong);
    return 0;
}
"""


def test_the_armv6m_output_stage_equals_the_64_bit_one(tmp_path):
    """Armv6-M has no 32x32->64 multiply: its C takes the rounded high half of a*b from four
    16x16 products. Equal to the int64 form for every edge pair and 20 M random ones."""
    files = compile_model(model_path("mnv1_a025_96_c10"), Options(target="cortex-m0plus")).files
    assert "int64_t product = (int64_t)(int32_t)" not in files["mnv2_kernels.c"]  # nor in requantize()
    write_files(files, tmp_path)
    (tmp_path / "check.c").write_text(HIGH_MUL_CHECK)
    subprocess.run(["gcc", "-O2", "-std=c99", "-I", str(tmp_path), str(tmp_path / "check.c"), "-o",
                    str(tmp_path / "check")], check=True, capture_output=True)
    checked, wrong = map(int, subprocess.run([str(tmp_path / "check")], check=True, capture_output=True,
                                             text=True).stdout.split())
    assert checked == 25 * 25 + 20_000_000 and wrong == 0


@pytest.mark.parametrize("target, hint", [("cortex-m33", "--board mps2-an505"), ("cortex-m0plus", "--board mps2-an385"),
                                          ("cortex-m85", "QEMU emulates no cortex-m85")])
def test_verify_of_a_core_says_where_its_c_runs(target, hint, capsys):
    from mnv2gen.cli import main

    assert main(["verify", str(model_path("mnv1_a025_96_c10")), "--target", target]) == 2
    assert hint in capsys.readouterr().err
