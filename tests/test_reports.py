"""The HTML/PNG memory report: a static page, and what a real browser draws of it."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnv2gen.cli import main
from mnv2gen.codegen.render import Options
from mnv2gen.presentation.memory import format_report, memory_report
from mnv2gen.presentation.html import COLOURS, find_chromium, page_height, render_html, write_reports

MODEL = Path(__file__).resolve().parent.parent / "models" / "mobilenet_v2_035_96.tflite"


@pytest.fixture(scope="module")
def report():
    # TFLite Micro's figure is given rather than measured: the page is the subject here.
    result = memory_report(MODEL, Options(), with_tflm=False)
    result.tflm_arena_bytes, result.tflm_activation_bytes = 218_192, 138_240
    return result


def test_page_is_static_and_complete(report):
    page = render_html(report)
    # Nothing to fetch and nothing to run: the only URL is the SVG namespace.
    assert "<script" not in page and "src=" not in page and "<link" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}  # one per chart
    assert page.count("<tbody>") == 2 and page.count("<tr><td>") == len(report.steps)
    for level in (report.arena_bytes, report.paper_bound_bytes, report.tflm_arena_bytes):
        assert f"{level:,} B" in page
    assert f"{report.macs:,}" in page and "<svg" in page


def test_model_strings_are_escaped(report):
    page = render_html(dataclasses.replace(report, model="<img src=x onerror=alert(1)>.tflite"))
    assert "<img" not in page and "&lt;img" in page


def _png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into an array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        header = struct.unpack(">IIBBBBB", body) if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    bpp = 3 if colour_type == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * bpp)
    rows = np.zeros((height + 1, width * bpp), np.int32)  # row 0: the zero row above the image
    for y in range(height):
        kind, line, up = raw[y, 0], raw[y, 1:].astype(np.int32), rows[y]
        rows[y + 1] = _unfilter(kind, line, up, bpp)
    return rows[1:].reshape(height, width, bpp)[..., :3].astype(np.uint8)


def _unfilter(kind: int, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 2:
        return (line + up) & 255
    if kind == 1:  # each byte adds the reconstructed one bpp to the left: a running sum per channel
        return (np.cumsum(line.reshape(-1, bpp), axis=0) & 255).reshape(-1)
    out = line.copy()  # average and Paeth depend on the byte just reconstructed: byte by byte
    for i in range(len(out)):
        left = int(out[i - bpp]) if i >= bpp else 0
        above, corner = int(up[i]), (int(up[i - bpp]) if i >= bpp else 0)
        if kind == 3:
            out[i] = (out[i] + (left + above) // 2) & 255
        else:
            p = left + above - corner
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - corner)
            out[i] = (out[i] + (left if pa <= pb and pa <= pc else above if pb <= pc else corner)) & 255
    return out


def test_browser_screenshot(report, tmp_path):
    if find_chromium() is None:
        pytest.fail("Chromium is not installed (tools/setup.sh installs it), so no browser can render the page",
                    pytrace=False)
    html_path, png_path = write_reports(report, tmp_path / "report.html", tmp_path / "report.png")
    assert html_path.exists()
    pixels = _png_pixels(png_path.read_bytes())
    assert pixels.shape == (page_height(report), 1200, 3)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)[::7]}
    assert len(colours) > 200  # text, anti-aliasing, bars and lines; a blank or error page has a few
    assert (pixels.min(axis=2) < 200).mean() > 0.02  # and it is not almost all white
    for name in ("live", "arena", "bound", "tflm"):  # the bars and each level's line were drawn
        rgb = tuple(int(COLOURS[name][i:i + 2], 16) for i in (1, 3, 5))
        assert (pixels == rgb).all(axis=2).sum() > 200, f"no {name} pixels in the screenshot"


def test_cli_writes_html_and_json(tmp_path, capsys):
    html_path = tmp_path / "r.html"
    assert main(["report", str(MODEL), "--no-tflm", "--html", str(html_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == [str(html_path)] and html_path.read_text().startswith("<!DOCTYPE html>")
    assert summary["steps"][0]["input_shapes"] == [[1, 96, 96, 3]]
    assert main(["report", str(MODEL), "--no-tflm", "--html", str(html_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_png_without_chromium_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mnv2gen.presentation.html.find_chromium", lambda: None)
    assert main(["report", str(MODEL), "--no-tflm", "--png", str(tmp_path / "r.png")]) == 2
    assert "Chromium" in capsys.readouterr().err


def test_frame_and_streamed_schedules_side_by_side(report):
    """Both ways the input reaches the arena, each with its live bytes per step, arena and
    MACs (equal: streaming recomputes nothing), drawn on one scale side by side."""
    frame, rows = report.inputs
    assert (frame.input, rows.input) == ("frame", "rows") and not frame.note and not rows.note
    assert frame.arena_bytes == report.arena_bytes == 30_720 and rows.arena_bytes == 15_840
    assert frame.macs == rows.macs == report.macs
    assert [s.live_bytes for s in frame.steps] == [s.live_bytes for s in report.steps]
    assert rows.steps[0].input_shapes == [[1, 96, 96, 3]] and max(s.live_bytes for s in rows.steps) < 27_648
    page = render_html(report)
    assert page.count("<svg") == 3 and page.count('class="half"') == 2
    assert f"--input rows: arena {rows.arena_bytes:,} B, {rows.macs:,} MACs" in page
    assert f"--input frame: arena {frame.arena_bytes:,} B, {frame.macs:,} MACs" in page
    text = format_report(report)
    assert "live B per step, side by side:" in text
    assert re.search(rf"^  rows +{rows.arena_bytes:,} +{rows.macs:,}  {len(rows.steps)}$", text, re.MULTILINE)


def test_a_model_that_cannot_stream_says_why(tmp_path):
    import model_zoo

    streamed = memory_report(model_zoo.get_model("fc_rows_head"), Options(), with_tflm=False).inputs[1]
    assert streamed.input == "rows" and not streamed.steps and "its first op is FULLY_CONNECTED" in streamed.note
    assert "its first op is FULLY_CONNECTED" in render_html(memory_report(model_zoo.get_model("fc_rows_head"),
                                                                          Options(), with_tflm=False))
