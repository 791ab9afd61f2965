"""`compile --board B`: the model checked against a real part's flash and RAM regions (the
table in firmware/chips.py), refused with the numbers (exit 2, nothing written) when it does
not fit, else the headroom printed."""

from __future__ import annotations

import json

import pytest

import model_zoo
from mnv2gen.cli import main
from mnv2gen.firmware.chips import CHIPS, CODE_RESERVE, Need, Region, check_fit, fit_needs

MODEL = "mnv2_a035_96_c10"  # 561 KB of weights for the Cortex-M4: more than a 512 KB part holds


def compile_for(board: str, tmp_path, *flags: str) -> tuple[int, dict]:
    out = tmp_path / "c"
    code = main(["compile", str(model_zoo.get_model(MODEL)), "--out", str(out), "--board", board, "--json", *flags])
    return code, out


def test_every_part_has_its_regions():
    expected = {"stm32f405", "stm32f411", "stm32f746", "stm32h743", "stm32l475", "stm32u585", "nrf52840",
                "nrf5340", "rp2040", "ra8d1"}
    assert set(CHIPS) == expected
    for chip in CHIPS.values():
        assert chip.flash.size >= 512 * 1024 and chip.ram.size >= 96 * 1024


def test_fitting_model_prints_the_headroom(tmp_path, capsys):
    code, out = compile_for("stm32f405", tmp_path)
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and (out / "mnv2_model.c").exists()
    assert summary["fit"][0].startswith("fits stm32f405")
    assert any("flash 1,048,576 bytes: weights" in line and "headroom" in line for line in summary["fit"])


def test_model_too_big_for_the_flash_is_refused_with_the_numbers(tmp_path, capsys):
    code, out = compile_for("stm32f411", tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "does not fit stm32f411" in err and "flash 524,288 bytes" in err and "short by" in err
    assert err.count("\n") == 1 and not out.exists()


def test_weights_in_a_section_of_their_own_are_not_counted(tmp_path, capsys):
    code, _ = compile_for("stm32f411", tmp_path, "--weights-section", ".qspi")
    assert code == 0 and "not counted" in capsys.readouterr().out


def test_a_target_the_core_cannot_run_is_refused(tmp_path, capsys):
    code, _ = compile_for("rp2040", tmp_path, "--target", "cortex-m4")
    assert code == 2 and "cannot run on rp2040" in capsys.readouterr().err


def test_ram_shortfall_names_the_region():
    chip = CHIPS["stm32f411"]
    needs = fit_needs(chip, weights=100, code=None, arena=200 * 1024, weights_placed=False, arena_placed=False)
    assert needs[0].items[-1][1] == CODE_RESERVE
    with pytest.raises(Exception, match=r"SRAM 131,072 bytes: arena 204,800 .* short by"):
        check_fit(chip, needs)
    assert Need(Region("r", 0, 10), (("a", 4),)).headroom == 6
