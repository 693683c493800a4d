"""What the grid commands (compare, transfer, ablate) share: `sparta train`'s flags, the
grid and evaluation flags, and running a grid's cells."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from sparta.commands import train as train_command
from sparta.commands._types import name_list, shard_value
from sparta.config import TrainConfig
from sparta.errors import SpartaError

DEFAULT_ATTACKS = "clean,pgd,cw,autoattack"


def add_train_flags(parser: argparse.ArgumentParser, skip: Iterable[str]) -> None:
    """`sparta train`'s flags (all default to TrainConfig's), but --resume, --out and those in `skip`."""
    group = parser.add_argument_group("training settings (as in sparta train)")
    train_command.add_arguments(group, skip={"resume", "out", *skip})


def add_grid_flags(parser: argparse.ArgumentParser) -> None:
    """Seeds, output directory and evaluation: shared by compare and transfer."""
    parser.add_argument(
        "--seeds", type=int, default=3, help="number of seeds per cell, counting up from --seed (default: 3)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of the cells and the table")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--shard",
        type=shard_value,
        default=None,
        metavar="I/K",
        help="run only cells I, I+K, I+2K, ... (0 <= I < K), e.g. one process per GPU; "
        "no table is written: rerun without --shard for it (finished cells are only read)",
    )
    only.add_argument(
        "--table-only",
        action="store_true",
        help="train and evaluate nothing: tabulate the finished cells, list the others",
    )
    group = parser.add_argument_group("evaluation")
    group.add_argument(
        "--attacks",
        type=name_list,
        default=name_list(DEFAULT_ATTACKS),
        help=f"comma list of clean,fgsm,pgd,cw,autoattack,square (default: {DEFAULT_ATTACKS})",
    )
    group.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    group.add_argument("--eval-batch-size", type=int, default=500)


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
    """Run the cells (this shard's only, with --shard); then print `tabulate(cells)`, the table,
    unless sharded. With --table-only, run nothing and tabulate the finished cells."""
    from sparta.experiments import run_grid

    if args.table_only:
        print(tabulate(finished_cells(cells, plan)))
        return 0
    if args.shard is None:
        run_grid(cells, plan)
        print(tabulate(cells))
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
