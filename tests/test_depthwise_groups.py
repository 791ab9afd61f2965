"""DEPTHWISE_GROUPS on the M4 (QEMU), bit-exact against TFLite: its 3x3 group in one assembly
block (inside windows), its border pixels through a pointer per tap, and the same C built
unoptimized, where both take their C form (the assembly needs registers a frame pointer
takes). Padded rows (above and below the input) read a row of the input zero point in flash,
however wide (wide_s1_same_c144_4x3)."""

from __future__ import annotations

import pytest

import model_zoo
from conftest import require_tools
from mnv2gen.codegen import render
from mnv2gen.codegen.render import Options
from mnv2gen.compiler import compile_model, write_files
from mnv2gen.firmware import build
from mnv2gen.firmware.boards import BOARDS
from mnv2gen.verification.board import run_on_board

M4 = "mps2-an386"


def _run(name: str, tmp_path, seed: int):
    require_tools("arm-none-eabi-gcc", "qemu-system-arm")
    path = model_zoo.depthwise_group_model(name)
    result = compile_model(path, Options(target=BOARDS[M4].core))
    assert "MNV2_KERNEL_DEPTHWISE_GROUPS" in result.files["mnv2_model.c"], "not the kernel the test is for"
    write_files(result.files, tmp_path)
    return run_on_board(path, result, tmp_path, BOARDS[M4], count=4, seed=seed, per_layer=False)


@pytest.mark.parametrize("name", sorted(model_zoo.DEPTHWISE_GROUP_OPS))
def test_depthwise_groups_are_bit_exact(name, tmp_path):
    report = _run(name, tmp_path, seed=7)
    assert report.bit_exact, f"{name}: {report.matched}/{report.inputs}"


@pytest.mark.parametrize("name", ["s1_same_c96_5x3", "s2_same_c20_9x7"])
def test_depthwise_groups_unoptimized_are_bit_exact(name, tmp_path, monkeypatch):
    """-O0: the C forms of the assembly blocks (#if !defined(__OPTIMIZE__))."""
    monkeypatch.setattr(build, "C_FLAGS", ["-O0" if flag == "-O2" else flag for flag in build.C_FLAGS])
    assert "-O0" in build.C_FLAGS
    report = _run(name, tmp_path, seed=8)
    assert report.bit_exact, f"{name} at -O0: {report.matched}/{report.inputs}"


@pytest.mark.parametrize("first", [True, False])
def test_depthwise_groups_find_their_zero_point_row_among_several(first, tmp_path, monkeypatch):
    """A model whose DEPTHWISE_GROUPS layers have several input zero points holds a row of
    each and picks its layer's by the zero point: here the model's row beside another one
    (first or last: the lookup's comparison or its fallback)."""
    real = render.ZeroRows.of

    def with_another(layers):
        rows = real(layers)
        (zero_point,) = rows.zero_points
        other = zero_point + 1 if zero_point < 127 else zero_point - 1
        return render.ZeroRows((zero_point, other) if first else (other, zero_point), rows.nbytes)

    monkeypatch.setattr(render.ZeroRows, "of", staticmethod(with_another))
    report = _run("s2_same_c68_6x8", tmp_path, seed=9)
    kernels_c = (tmp_path / "mnv2_kernels.c").read_text()
    assert "depthwise_zero_rows[2][" in kernels_c, "not two zero-point rows"
    assert report.bit_exact, f"{'first' if first else 'last'} of two rows: {report.matched}/{report.inputs}"
