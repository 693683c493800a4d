"""sparta ablate: vary Sparta's free choices one at a time and judge them by AutoAttack.

    sparta ablate --vary phi=depthwise --vary kernel_size=1,5 --vary share=layer,network \\
        --seeds 3 --out results/ablation

Cells are OUT/<model>-sparta_<factor>-<value>-<method>-seed<S>, plus the default Sparta
cell named as `sparta compare` names it (so a compare grid's directory is reused).
OUT/ablation.md holds the table (mean ± 95% CI over seeds) and the verdict per factor;
see sparta.experiments.ablation for the decision rule.
"""

from __future__ import annotations

import argparse

from sparta.commands._grid import add_grid_flags, add_train_flags, base_config, eval_plan, run_cells, seed_list
from sparta.commands._types import level_list

NAME = "ablate"
HELP = "vary Sparta's settings one at a time (phi, kernel_size, hidden, beta0, share, ...); verdict per factor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ablate flags: --vary levels, the grid flags and `sparta train`'s flags but act and share."""
    parser.add_argument(
        "--vary",
        type=level_list,
        action="append",
        required=True,
        metavar="FACTOR=V1,V2",
        help="levels of one factor, repeatable: a Sparta option (phi, kernel_size, hidden, "
        "groups, beta0, per_channel_beta) or share",
    )
    add_grid_flags(parser)
    add_train_flags(parser, skip={"act", "share"})


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the baseline and every variant x seeds, then write the table and verdicts."""
    from sparta.experiments import write_table
    from sparta.experiments.ablation import ablation_cells, verdict_markdown, verdicts

    plan = eval_plan(args)
    levels: dict[str, list] = {}
    for factor, values in args.vary:
        levels.setdefault(factor, []).extend(values)
    cells = ablation_cells(base_config(args), args.out, levels, seed_list(args))

    def tabulate(chosen) -> str:
        extra = verdict_markdown(verdicts(chosen, plan), plan)
        return write_table(chosen, plan, args.out, "Ablation of Sparta's settings", stem="ablation", extra=extra)

    return run_cells(cells, plan, args, tabulate)
