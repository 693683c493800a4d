"""sparta transfer: reuse a trained Sparta function, frozen, in another CNN or on another dataset.

Three arms x seeds on the target: relu, sparta-scratch, sparta-frozen (the source's
function imported and frozen); one table as in `sparta compare`. The source is a Sparta
run directory or function file (--source), or is trained first into OUT/source-... from
--source-model and --source-dataset. Training flags are those of `sparta train` and
apply to the target arms and to a source trained here. See sparta.experiments.transfer
for the decisions (share mode, what each kind changes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparta.commands._grid import add_grid_flags, add_train_flags, base_config, eval_plan, run_cells, seed_list
from sparta.errors import SpartaError

NAME = "transfer"
HELP = "train relu / sparta-scratch / sparta-frozen on a target CNN or dataset; table with mean ± 95% CI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The transfer flags: kind, source and target, the grid flags and `sparta train`'s flags."""
    from sparta.experiments.transfer import KINDS

    parser.add_argument(
        "--kind",
        required=True,
        choices=list(KINDS),
        help="cross-cnn: another model, same dataset; cross-dataset: another dataset, same model",
    )
    parser.add_argument(
        "--source",
        metavar="RUN_DIR_OR_FILE",
        help="a Sparta run directory or sparta.safetensors file (default: train one first)",
    )
    parser.add_argument(
        "--source-model",
        default="smallcnn",
        help="model of a source trained here; its share mode is --share, else stage when "
        "source and target models have the same stages, else network",
    )
    parser.add_argument("--source-dataset", default="fashion-mnist", help="dataset of a source trained here")
    parser.add_argument("--target-model", help="the target CNN (default: the source's model)")
    parser.add_argument("--target-dataset", help="the target dataset (default: the source's dataset)")
    add_grid_flags(parser)
    add_train_flags(parser, skip={"act", "model", "dataset", "sparta_from", "freeze_sparta"})


def _source(args: argparse.Namespace):
    """The Source: read from --source, or trained into OUT/source-<model>-<dataset>-seed<S>.

    A source trained here is not evaluated (`sparta eval` it when wanted): the table
    compares arms on the target only.
    """
    from sparta.experiments import EvalPlan, read_source, run_grid, source_cell
    from sparta.experiments.transfer import default_share

    given = base_config(args)
    if args.source:
        if args.share is not None:
            raise SpartaError(f"--share is the source's ({args.source}); drop it")
        if args.act_options is not None and not Path(args.source).is_file():
            raise SpartaError(f"--act-option is taken from the source run {args.source}; drop it")
        return read_source(args.source, given.act_options)
    share = args.share or default_share(args.source_model, args.target_model or args.source_model)
    same_data = (args.target_dataset or args.source_dataset) == args.source_dataset
    cell = source_cell(
        given, args.out, args.source_model, args.source_dataset, share, given.data_root if same_data else None
    )
    run_grid([cell], EvalPlan(()))
    return read_source(cell.run_dir)


def run(args: argparse.Namespace) -> int:
    """Train the relu, sparta-scratch and sparta-frozen arms on the target, then write their table."""
    from sparta.experiments import arm_cells, write_table
    from sparta.experiments.transfer import target_config

    seeds, plan = seed_list(args), eval_plan(args)
    source = _source(args)
    target = target_config(base_config(args), args.kind, source, args.target_model, args.target_dataset)
    cells = arm_cells(target, source, seeds, args.out)
    title = f"Transfer ({args.kind}) of the Sparta function {source.function}"
    return run_cells(cells, plan, args, lambda: write_table(cells, plan, args.out, title))
