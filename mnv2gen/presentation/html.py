"""The memory report as one static HTML page (inline SVG, inline CSS, no scripts, nothing
fetched), and as a PNG screenshot of that page taken by headless Chromium.

The page shows live memory over the schedule with the MobileNetV2 paper's bound, TFLite
Micro's arena and ours drawn across it, a table of every step (shapes, MACs, weights, arena
offsets) and the totals. Every string that comes from the model goes through html.escape.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import UserError
from .memory import MemoryReport, StepRow

CHART_WIDTH, CHART_HEIGHT = 1100, 380
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 86, 200, 16, 40
COLOURS = {"live": "#4c78a8", "ring": "#9ecae9", "arena": "#2ca02c", "bound": "#f58518", "tflm": "#d62728"}


def _bytes(n: int) -> str:
    return f"{n:,}"


def _shape(shape: list[int]) -> str:
    return "&times;".join(map(str, shape)) or "scalar"


def _tick_step(top: float, target_ticks: int = 6) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about `target_ticks` ticks."""
    raw = top / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _levels(report: MemoryReport) -> list[tuple[str, int, str]]:
    """The horizontal lines of the chart: (label, bytes, colour key)."""
    levels = [(f"our arena {_bytes(report.arena_bytes)} B", report.arena_bytes, "arena"),
              (f"paper bound {_bytes(report.paper_bound_bytes)} B", report.paper_bound_bytes, "bound")]
    if report.tflm_arena_bytes:
        levels.append((f"TFLite Micro {_bytes(report.tflm_arena_bytes)} B", report.tflm_arena_bytes, "tflm"))
    return levels


def _label_positions(ys: list[float], gap: float = 16) -> list[float]:
    """Push the labels of nearby lines apart so they never overlap (lines keep their place)."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    for before, after in zip(order, order[1:]):
        placed[after] = max(placed[after], placed[before] + gap)
    return placed


def chart_svg(report: MemoryReport) -> str:
    """Bars of live bytes per step (rings, the pipelines' scratch, in a lighter shade on top
    of the tensors), with dashed lines at our arena, the paper's bound and TFLite Micro's."""
    levels = _levels(report)
    top = max([s.live_bytes for s in report.steps] + [level for _, level, _ in levels]) * 1.08
    return _bars_svg(report.steps, levels, top, CHART_WIDTH, "live memory per step")


def input_charts_html(report: MemoryReport) -> str:
    """The frame schedule and the streamed one (--input rows) side by side, on one scale,
    each with its arena; or why the input cannot stream."""
    shown = [s for s in report.inputs if not s.note]
    if not shown:
        return ""
    top = max(step.live_bytes for s in shown for step in s.steps) * 1.08
    charts = []
    for s in report.inputs:
        title = html.escape(f"--input {s.input}")
        if s.note:
            charts.append(f'<div class="half"><h3>{title}</h3><p>{html.escape(s.note)}</p></div>')
            continue
        levels = [(f"arena {_bytes(s.arena_bytes)} B", s.arena_bytes, "arena")]
        charts.append(f'<div class="half"><h3>{title}: arena {_bytes(s.arena_bytes)} B, '
                      f'{_bytes(s.macs)} MACs</h3>{_bars_svg(s.steps, levels, top, CHART_WIDTH // 2, title)}</div>')
    return f'<div class="pair">{"".join(charts)}</div>'


def _bars_svg(steps: list[StepRow], levels: list[tuple[str, int, str]], top: float, width: int, label: str) -> str:
    """The bars of `steps` under `levels` (label, bytes, colour), `top` bytes high."""
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - value / top)

    slot = plot_w / max(len(steps), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {CHART_HEIGHT}" '
             f'role="img" aria-label="{html.escape(label)}">']
    step = _tick_step(top)
    for value in range(0, int(top) + 1, step):
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" class="grid"/>'
                     f'<text x="{MARGIN_LEFT - 8}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">'
                     f'{_bytes(value)}</text>')
    for i, row in enumerate(steps):
        x, width = MARGIN_LEFT + i * slot + slot * 0.15, slot * 0.7
        tensors = row.live_bytes - row.ring_bytes
        title = html.escape(f"step {row.step}: {row.what}; live {_bytes(row.live_bytes)} B "
                            f"(rings {_bytes(row.ring_bytes)} B)")
        parts.append(f'<g><title>{title}</title>'
                     f'<rect x="{x:.1f}" y="{y(tensors):.1f}" width="{width:.1f}" '
                     f'height="{y(0) - y(tensors):.1f}" fill="{COLOURS["live"]}"/>'
                     f'<rect x="{x:.1f}" y="{y(row.live_bytes):.1f}" width="{width:.1f}" '
                     f'height="{y(tensors) - y(row.live_bytes):.1f}" fill="{COLOURS["ring"]}"/></g>')
        if len(steps) <= plot_w / 20 or i % 5 == 0:  # keep step numbers legible on long schedules
            parts.append(f'<text x="{x + width / 2:.1f}" y="{y(0) + 16:.1f}" class="tick" '
                         f'text-anchor="middle">{row.step}</text>')
    ys = [y(level) for _, level, _ in levels]
    for (label, _, colour), line_y, label_y in zip(levels, ys, _label_positions(ys)):
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{line_y:.1f}" y2="{line_y:.1f}" '
                     f'stroke="{COLOURS[colour]}" stroke-width="2.5" stroke-dasharray="8 5"/>'
                     f'<text x="{MARGIN_LEFT + plot_w + 8}" y="{label_y + 4:.1f}" class="level" '
                     f'fill="{COLOURS[colour]}">{label}</text>')
    parts.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{y(0)}" class="axis"/>'
                 f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y(0)}" y2="{y(0)}" class="axis"/>'
                 f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{CHART_HEIGHT - 4}" class="tick" '
                 f'text-anchor="middle">step of the schedule</text>'
                 f'<text transform="translate(14 {MARGIN_TOP + plot_h / 2}) rotate(-90)" class="tick" '
                 f'text-anchor="middle">bytes</text></svg>')
    return "".join(parts)


# The trailing "1x96x96x3 -> 1x48x48x8" of a step's description: the table has shape columns.
_SHAPES_SUFFIX = re.compile(r" [0-9x]+( \+ [0-9x]+)* -> [0-9x]+$")


def _row_html(row: StepRow, paper_bound: int) -> str:
    offsets = ", ".join(f"@{o:,}" for o in row.input_offsets)
    inputs = " + ".join(_shape(s) for s in row.input_shapes)
    over = ' class="over"' if row.live_bytes > paper_bound else ""
    what = html.escape(_SHAPES_SUFFIX.sub("", row.what))
    return (f"<tr><td>{row.step}</td><td class=\"what\">{what}</td>"
            f"<td>{inputs}</td><td>{_shape(row.output_shape)}</td><td>{_bytes(row.macs)}</td>"
            f"<td>{_bytes(row.weight_bytes)}</td><td>{offsets}</td><td>@{row.output_offset:,}</td>"
            f"<td>{_bytes(row.ring_bytes)}</td><td{over}>{_bytes(row.live_bytes)}</td></tr>")


def _cards(report: MemoryReport) -> list[tuple[str, str, str]]:
    """(title, figure, note) of the headline figures."""
    cards = [("our arena", f"{_bytes(report.arena_bytes)} B", "all activations, input and output"),
             ("paper bound M(G)", f"{_bytes(report.paper_bound_bytes)} B", html.escape(report.paper_bound_op))]
    if report.tflm_arena_bytes:
        cards.append(("TFLite Micro arena", f"{_bytes(report.tflm_arena_bytes)} B",
                      f"ours is {report.arena_bytes / report.tflm_arena_bytes:.2f}&times;"))
    weights = sum(s.weight_bytes for s in report.steps)
    cards += [("MACs per inference", _bytes(report.macs), f"{len(report.steps)} steps"),
              ("weights (flash)", f"{_bytes(weights)} B", "weights and biases")]
    return cards


STYLE = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #222; margin: 28px 40px;
       background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
.sub { color: #666; font-size: 13px; margin-bottom: 18px; }
.cards { display: flex; gap: 12px; max-width: 1100px; }
.card { flex: 1 1 0; border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; background: #fafbfc; }
.card .t { font-size: 12px; color: #666; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 22px; font-weight: bold; margin: 2px 0; } .card .n { font-size: 12px; color: #555; }
svg { width: 100%; max-width: 1100px; height: auto; }
svg .grid { stroke: #e6e6e6; } svg .axis { stroke: #444; } svg .tick { font-size: 12px; fill: #444; }
svg .level { font-size: 13px; font-weight: bold; }
.legend span { display: inline-block; margin-right: 18px; font-size: 13px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; } td.what { text-align: left; font-family: monospace; }
tr:nth-child(even) td { background: #fafafa; } td.over { color: #d62728; }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
.pair { display: flex; gap: 12px; max-width: 1100px; } .half { flex: 1 1 0; min-width: 0; }
h3 { font-size: 14px; margin: 4px 0; }
"""


def render_html(report: MemoryReport) -> str:
    weights = sum(s.weight_bytes for s in report.steps)
    cards = "".join(f'<div class="card"><div class="t">{t}</div><div class="v">{v}</div><div class="n">{n}</div></div>'
                    for t, v, n in _cards(report))
    legend = "".join(f'<span><i style="background:{COLOURS[key]}"></i>{text}</span>' for key, text in [
        ("live", "tensors live during the step"), ("ring", "ring buffers inside a fused pipeline"),
        ("arena", "our arena"), ("bound", "paper bound M(G)"), ("tflm", "TFLite Micro arena")])
    rows = "".join(_row_html(row, report.paper_bound_bytes) for row in report.steps)
    schedules = "".join(f"<tr><td class=\"what\">{s.optimize}</td><td>{_bytes(s.arena_bytes)}</td>"
                        f"<td>{_bytes(s.macs)}</td></tr>" for s in report.schedules)
    name = html.escape(Path(report.model).name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="Generated by mnv2gen {__version__}"><title>mnv2gen memory report: {name}</title>
<style>{STYLE}</style></head><body>
<h1>Memory plan of {name}</h1>
<div class="sub">mnv2gen {__version__}, --optimize {html.escape(report.optimize)}.
Live bytes count every buffer live during a step; the arena can be smaller, because a fused
pipeline writes its output over the part of its input it has finished reading.</div>
<div class="cards">{cards}</div>
<h2>Live memory over the schedule</h2>
{chart_svg(report)}
<div class="legend">{legend}</div>
<h2>Steps</h2>
<table><thead><tr><th>step</th><th style="text-align:left">op</th><th>input shapes</th><th>output shape</th>
<th>MACs</th><th>weights B</th><th>input offsets</th><th>output offset</th><th>rings B</th><th>live B</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot><tr><td colspan="4" style="text-align:left">total ({len(report.steps)} steps)</td>
<td>{_bytes(report.macs)}</td><td>{_bytes(weights)}</td><td colspan="3" style="text-align:left">arena
{_bytes(report.arena_bytes)} B</td><td>peak {_bytes(max((s.live_bytes for s in report.steps), default=0))}</td></tr></tfoot>
</table>
<h2>Schedules (all bit-exact)</h2>
<table><thead><tr><th style="text-align:left">--optimize</th><th>arena B</th><th>MACs</th></tr></thead>
<tbody>{schedules}</tbody></table>
<h2>The input as a frame, and streamed (--input rows), side by side</h2>
{input_charts_html(report)}
</body></html>
"""


def page_height(report: MemoryReport) -> int:
    """A window tall enough for the whole page (chart, cards, one table row per step)."""
    return 900 + 25 * len(report.steps) + 30 * len(report.schedules) + (480 if report.inputs else 0)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# No network, no updates, no first-run dialogs, a throw-away profile: the screenshot depends
# only on the file.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync"]


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1200, height: int = 1600) -> Path:
    """Render `html_path` in headless Chromium and save a `width` x `height` PNG."""
    browser = find_chromium()
    if browser is None:
        raise UserError("--png needs Chromium: install it with `apt-get install chromium` (or run tools/setup.sh)")
    png_path = Path(png_path).resolve()
    with tempfile.TemporaryDirectory(prefix="mnv2gen-chromium-") as profile:
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
                   f"--window-size={width},{height}", Path(html_path).resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not png_path.exists():
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return png_path


def write_reports(report: MemoryReport, html_path: str | Path | None, png_path: str | Path | None) -> list[Path]:
    """Write the HTML page and/or its screenshot; the PNG alone still goes through a page."""
    written = []
    with tempfile.TemporaryDirectory(prefix="mnv2gen-report-") as tmp:
        page = Path(html_path) if html_path else Path(tmp) / "report.html"
        try:
            page.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write the report: {exc}", source=str(page)) from None
        if html_path:
            written.append(page)
        if png_path:
            written.append(screenshot(page, png_path, height=page_height(report)))
    return written
