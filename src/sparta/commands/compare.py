"""sparta compare: train and evaluate activations x seeds (x models x methods); one table.

Every cell is a run directory OUT/<model>-<act>-<method>-seed<S>; a rerun skips finished
cells and resumes killed ones. The table (OUT/table.md, OUT/table.csv) gives mean ± 95%
CI over seeds of accuracy under each attack and of training time, with parameter counts.
Training flags are those of `sparta train` (one table of flags); --act-option,
--sparta-from and --freeze-sparta apply to the Sparta cells only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from sparta.commands import train as train_command
from sparta.commands._types import name_list, shard_value
from sparta.config import TrainConfig
from sparta.errors import SpartaError

NAME = "compare"
HELP = "train and evaluate a grid of activations x seeds; table with mean ± 95% CI"

DEFAULT_ATTACKS = "clean,pgd,cw,autoattack"


class _FlagsExcept:
    """Passes `add_argument` on to a parser, except for the flags whose dest is in `skip`.

    Lets a command take `sparta train`'s flag table while replacing a few flags by its own.
    """

    def __init__(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, skip: Iterable[str]) -> None:
        self.parser = parser
        self.skip = set(skip)

    def add_argument(self, *flags: str, **spec: Any) -> None:
        dest = spec.get("dest") or flags[0].lstrip("-").replace("-", "_")
        if dest not in self.skip:
            self.parser.add_argument(*flags, **spec)


def add_train_flags(parser: argparse.ArgumentParser, skip: Iterable[str]) -> None:
    """`sparta train`'s flags (all default to TrainConfig's), but those in `skip`."""
    group = parser.add_argument_group("training settings (as in sparta train)")
    train_command.add_arguments(_FlagsExcept(group, {"resume", "out", *skip}))  # type: ignore[arg-type]


def add_grid_flags(parser: argparse.ArgumentParser) -> None:
    """Seeds, output directory and evaluation: shared by compare and transfer."""
    parser.add_argument("--seeds", type=int, default=3,
                        help="number of seeds per cell, counting up from --seed (default: 3)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the cells and the table")
    parser.add_argument("--shard", type=shard_value, default=None, metavar="I/K",
                        help="run only cells I, I+K, I+2K, ... (0 <= I < K), e.g. one process per GPU; "
                        "no table is written: rerun without --shard for it (finished cells are only read)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--attacks", type=name_list, default=name_list(DEFAULT_ATTACKS),
                       help=f"comma list of clean,fgsm,pgd,cw,autoattack,square (default: {DEFAULT_ATTACKS})")
    group.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    group.add_argument("--eval-batch-size", type=int, default=500)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The compare flags: activations, models, methods, the grid flags and `sparta train`'s flags."""
    parser.add_argument("--acts", type=name_list, default=name_list("relu,swish,frelu,sparta"),
                        help="comma list of activations (default: relu,swish,frelu,sparta)")
    parser.add_argument("--models", type=name_list, default=None, help="comma list of models (default: smallcnn)")
    parser.add_argument("--methods", type=name_list, default=None,
                        help="comma list of training methods (default: pgd)")
    add_grid_flags(parser)
    parser.add_argument("--table-only", action="store_true",
                        help="train and evaluate nothing: tabulate the finished cells, list the others")
    add_train_flags(parser, skip={"act", "model", "method"})


def base_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the given training flags (the grid varies the rest)."""
    return TrainConfig(**train_command.config_from_args(args))


def seed_list(args: argparse.Namespace) -> list[int]:
    """The seeds of each cell: --seeds of them, counting up from --seed."""
    if args.seeds < 1:
        raise SpartaError(f"--seeds must be >= 1, got {args.seeds}")
    first = args.seed if getattr(args, "seed", None) is not None else TrainConfig.seed
    return list(range(first, first + args.seeds))


def eval_plan(args: argparse.Namespace):
    """The attacks, test-image count and batch size every cell is evaluated with."""
    from sparta.experiments import EvalPlan

    return EvalPlan(tuple(args.attacks), args.n, args.eval_batch_size)


def run_cells(cells, plan, args: argparse.Namespace, tabulate) -> int:
    """Run the cells (this shard's only, with --shard); then print `tabulate()`, the table, unless sharded."""
    from sparta.experiments import run_grid

    if args.shard is None:
        run_grid(cells, plan)
        print(tabulate())
        return 0
    index, count = args.shard
    run_grid(cells[index::count], plan)
    print(f"shard {index}/{count} done; rerun without --shard for the table")
    return 0


def finished_cells(cells, plan) -> list:
    """The cells whose training and requested evaluations are done; names the others on stderr."""
    from sparta.experiments.grid import cell_state, eval_size

    done = [cell for cell in cells if cell_state(cell, plan, eval_size(cell.config, plan)) == "done"]
    missing = [cell.name for cell in cells if cell not in done]
    if missing:
        print(f"not finished, left out of the table: {', '.join(missing)}", file=sys.stderr)
    if not done:
        raise SpartaError("no finished cell to tabulate yet")
    return done


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the activations x seeds (x models x methods) grid, then write its table."""
    from sparta.experiments import grid_cells, write_table

    plan = eval_plan(args)
    cells = grid_cells(base_config(args), args.out, args.acts, seed_list(args), args.models, args.methods)

    def tabulate(chosen) -> str:
        return write_table(chosen, plan, args.out, "Activations compared", paired_against=cells[0].labels["act"])

    if args.table_only:
        print(tabulate(finished_cells(cells, plan)))
        return 0
    return run_cells(cells, plan, args, lambda: tabulate(cells))
