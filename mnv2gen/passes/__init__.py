"""Graph rewrites. Each pass takes a verified graph and leaves a valid one; `run_passes`
verifies the graph at each pass boundary (once per pass, not once per rewrite)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .. import ir
from ..plan.streaming import InputMode, SensorRows, why_not_streamable
from .fold_pad import fold_pad
from .fuse import fuse_bottlenecks, fuse_neighbours, wrap_layers
from .tables import chain_tables



class OptimizeLevel(enum.StrEnum):
    """What `--optimize` trades: arena bytes against recomputed MACs (see run_passes). A str
    enum, so "memory" from a command line or a JSON file equals OptimizeLevel.MEMORY."""

    MEMORY = "memory"
    BALANCED = "balanced"
    SPEED = "speed"


OPTIMIZE_LEVELS = tuple(OptimizeLevel)


@dataclass(frozen=True)
class Passed:
    """What the passes leave: the schedule the optimize level asks for, and the graph with
    each inverted residual fused (the paper's view of the model, whose bound
    plan/bound.py takes), so nobody runs the passes twice to get it."""

    scheduled: ir.Graph
    bottlenecks: ir.Graph


def _verified(graph: ir.Graph) -> ir.Graph:
    graph.verify()
    return graph


def run_passes(graph: ir.Graph, optimize: OptimizeLevel = OptimizeLevel.MEMORY,
               input_mode: InputMode = InputMode.FRAME, sensor: SensorRows | None = None) -> Passed:
    """speed: every convolution and ADD on its own (layer by layer); balanced: inverted
    residuals fused, so their expansion is never whole; memory: also neighbouring pipelines
    fused wherever the planner finds that it shrinks the arena (planned with the input as
    `input_mode` brings it, with `sensor`'s ring for --input-scale-from: a streamed input
    changes which merges pay). All are bit-exact.
    `graph` is verified already (the frontend's); the passes do not change it."""
    from ..plan.arena import arena_bytes_of

    layers = _verified(wrap_layers(_verified(chain_tables(_verified(fold_pad(graph))))))
    bottlenecks = _verified(fuse_bottlenecks(layers))
    if optimize == OptimizeLevel.SPEED:
        return Passed(scheduled=layers, bottlenecks=bottlenecks)
    if optimize == OptimizeLevel.BALANCED:
        return Passed(scheduled=bottlenecks, bottlenecks=bottlenecks)
    def arena_of(candidate: ir.Graph) -> float:
        # A streamed input needs the first pipeline to be its only reader: a schedule where it
        # is not counts as infinitely large, so a merge that makes it so is taken (planning
        # the schedule finally chosen says why, if none does).
        if input_mode is InputMode.ROWS and why_not_streamable(candidate):
            return math.inf
        return arena_bytes_of(candidate, input_mode, sensor)

    return Passed(scheduled=_verified(fuse_neighbours(bottlenecks, arena_of)), bottlenecks=bottlenecks)
