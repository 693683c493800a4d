"""sparta compare: train and evaluate activations x seeds (x models x methods); one table.

Every cell is a run directory OUT/<model>-<act>-<method>-seed<S>; a rerun skips finished
cells and resumes killed ones. The table (OUT/table.md, OUT/table.csv) gives mean ± 95%
CI over seeds of accuracy under each attack and of training time, with parameter counts.
Training flags are those of `sparta train` (one table of flags); --act-option,
--sparta-from and --freeze-sparta apply to the Sparta cells only.
"""

from __future__ import annotations

import argparse

from sparta.commands._grid import (
    add_grid_flags,
    add_train_flags,
    base_config,
    eval_plan,
    run_cells,
    seed_list,
)
from sparta.commands._types import name_list

NAME = "compare"
HELP = "train and evaluate a grid of activations x seeds; table with mean ± 95% CI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The compare flags: activations, models, methods, the grid flags and `sparta train`'s flags."""
    parser.add_argument(
        "--acts",
        type=name_list,
        default=name_list("relu,swish,frelu,sparta"),
        help="comma list of activations (default: relu,swish,frelu,sparta)",
    )
    parser.add_argument("--models", type=name_list, default=None, help="comma list of models (default: smallcnn)")
    parser.add_argument("--methods", type=name_list, default=None, help="comma list of training methods (default: pgd)")
    add_grid_flags(parser)
    add_train_flags(parser, skip={"act", "model", "method"})


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the activations x seeds (x models x methods) grid, then write its table."""
    from sparta.experiments import grid_cells, write_table

    plan = eval_plan(args)
    cells = grid_cells(base_config(args), args.out, args.acts, seed_list(args), args.models, args.methods)

    def tabulate(chosen) -> str:
        return write_table(chosen, plan, args.out, "Activations compared", paired_against=cells[0].labels["act"])

    return run_cells(cells, plan, args, tabulate)
