"""Graph rewrites. Each pass takes a verified graph and leaves a verified graph."""

from __future__ import annotations

from .. import ir
from .fold_pad import fold_pad
from .fuse import fuse_bottlenecks, fuse_neighbours, wrap_layers

OPTIMIZE_LEVELS = ("memory", "balanced", "speed")


def run_passes(graph: ir.Graph, optimize: str = "memory") -> ir.Graph:
    """speed: every convolution and ADD on its own (layer by layer); balanced: inverted
    residuals fused, so their expansion is never whole; memory: also neighbouring pipelines
    fused wherever the planner finds that it shrinks the arena. All are bit-exact."""
    from ..plan.arena import arena_bytes_of

    graph.verify()
    graph = wrap_layers(fold_pad(graph))
    if optimize in ("balanced", "memory"):
        graph = fuse_bottlenecks(graph)
    if optimize == "memory":
        graph = fuse_neighbours(graph, arena_bytes_of)
    return graph
