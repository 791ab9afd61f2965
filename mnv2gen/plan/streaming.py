"""Streamed input (`--input rows`): the graph input is never whole in the arena.

With `InputMode.ROWS` the caller hands <p>_run_rows() a function that produces input rows
on demand, and the first row pipeline pulls them as its first stage's window needs them,
into a ring of a few rows placed in the arena like any other ring. Here: which models can
stream (their input must be read by the first step only, and that step must be a row
pipeline), and the fill requests the engine makes (`fill_runs`): rows produced so far up to
the row needed, split where the ring wraps, so each request is one contiguous run of slots.
Rows no window reads (the last ones, under VALID padding) are asked for when the pipeline is
done, so the caller sees every row once, in order, as a camera delivers them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import ir
from ..errors import UserError


class InputMode(enum.StrEnum):
    """How the input reaches the arena: a whole frame written at <p>_input() before
    <p>_run(), or rows pulled through a callback by <p>_run_rows()."""

    FRAME = "frame"
    ROWS = "rows"


@dataclass(frozen=True)
class SensorRows:
    """With --input-scale-from, what fill delivers: rows of a sensor frame (`tensor`, uint8,
    [1, rows, width, bytes a pixel takes in the ring]) into a ring of their own, from which
    the C computes each row y of the graph input out of sensor rows windows[y] (first, last).
    The sensor's rows are asked for as the input's rows need them, every one once, in order;
    those no input row reads are asked for after the input's last row."""

    tensor: ir.Tensor
    windows: tuple[tuple[int, int], ...]


def why_not_streamable(graph: ir.Graph) -> str:
    """Why the input of `graph` cannot be streamed, or "" if it can."""
    steps = [op for op in graph.ops if not isinstance(op, ir.Reshape)]
    first = steps[0] if steps else None
    why = ""
    if not isinstance(first, ir.RowPipeline) or first.input is not graph.input:
        name = first.op_name if first is not None else "nothing"
        why = (f"its first op is {name}, which does not run row by row (only a convolution, a "
               "depthwise convolution or an ADD on NHWC int8 rows can take streamed rows)")
    elif any(graph.input in op.activation_inputs() for op in steps[1:]):
        why = "its input is also read by a later op, so the whole frame would have to stay in the arena"
    elif graph.input.shape[1] < 2:
        why = "its input has a single row: there is nothing to stream"
    return why


def check_streamable(graph: ir.Graph) -> None:
    """Raise UserError (exit 2) saying why the input of `graph` cannot be streamed, if not."""
    why = why_not_streamable(graph)
    if why:
        raise UserError(f"--input rows: cannot stream the input {graph.input.name!r}: {why}; "
                        "compile without --input rows (the frame API)", source=graph.source)


def fill_runs(produced: int, last: int, slots: int) -> list[tuple[int, int]]:
    """The fill requests (first row, row count) that bring a ring of `slots` rows from
    `produced` rows filled to row `last`: one per run of rows that does not wrap the ring."""
    runs = []
    while produced <= last:
        count = min(last - produced + 1, slots - produced % slots)
        runs.append((produced, count))
        produced += count
    return runs
