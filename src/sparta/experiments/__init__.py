"""Experiments behind `sparta compare` and `sparta transfer`: resumable grids of runs and their tables."""

from sparta.experiments.grid import Cell, EvalPlan, grid_cells, run_grid
from sparta.experiments.table import collect, write_table
from sparta.experiments.transfer import ARMS, KINDS, Source, arm_cells, read_source, source_cell

__all__ = [
    "ARMS",
    "KINDS",
    "Cell",
    "EvalPlan",
    "Source",
    "arm_cells",
    "collect",
    "grid_cells",
    "read_source",
    "run_grid",
    "source_cell",
    "write_table",
]
