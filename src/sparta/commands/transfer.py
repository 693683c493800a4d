"""sparta transfer: reuse a trained Sparta function, frozen, in another CNN or on another dataset.

Three arms x seeds on the target, trained seed by seed: relu, sparta-scratch,
sparta-frozen (the source's function imported and frozen); one table as in `sparta
compare`, and whether each frozen cell's function stayed bit-identical to the source's. The source is a Sparta
run directory or function file (--source), or is trained first into OUT/source-... from
--source-model and --source-dataset. Training flags are those of `sparta train` and
apply to the target arms and to a source trained here. See sparta.experiments.transfer
for the decisions (share mode, what each kind changes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sparta.commands._grid import add_grid_flags, add_train_flags, base_config, eval_plan, run_cells, seed_list
from sparta.errors import SpartaError

if TYPE_CHECKING:
    from sparta.experiments import Cell, EvalPlan, Source

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


def _cells(args: argparse.Namespace, seeds: list[int], plan: EvalPlan) -> tuple[list[Cell], Source, Cell | None]:
    """(the arm cells, the source, its cell to train first or None), every argument checked
    before anything trains: the source and targets, the function's fit in the target, and
    each cell's settings (sparta.experiments.grid.check_cells).

    The source is read from --source, or trained into OUT/source-<model>-<dataset>-seed<S>;
    until it is, an untrained function of its shape stands in for the fit checks. A source
    trained here is not evaluated (`sparta eval` it when wanted): the table compares arms
    on the target only.
    """
    from sparta.experiments import EvalPlan, arm_cells, read_source, source_cell
    from sparta.experiments.grid import check_cells
    from sparta.experiments.transfer import default_share, planned_source, target_config
    from sparta.runfiles import SPARTA_FILE
    from sparta.sharing import export_sparta
    from sparta.training.build import model_for

    given = base_config(args)
    if args.source:
        if args.share is not None:
            raise SpartaError(f"--share is the source's ({args.source}); drop it")
        if args.act_options is not None and not Path(args.source).is_file():
            raise SpartaError(f"--act-option is taken from the source run {args.source}; drop it")
        source = read_source(args.source, given.act_options)
        target = target_config(given, args.kind, source, args.target_model, args.target_dataset)
        return arm_cells(target, source, seeds, args.out), source, None  # run_grid checks them
    share = args.share or default_share(args.source_model, args.target_model or args.source_model)
    same_data = (args.target_dataset or args.source_dataset) == args.source_dataset
    cell = source_cell(
        given, args.out, args.source_model, args.source_dataset, share, given.data_root if same_data else None
    )
    source = planned_source(cell)
    target = target_config(given, args.kind, source, args.target_model, args.target_dataset)
    check_cells([cell], EvalPlan(()))
    with tempfile.TemporaryDirectory() as folder:
        stand_in = Path(folder) / SPARTA_FILE
        export_sparta(model_for(cell.config), stand_in)
        try:
            cells = arm_cells(target, source, seeds, args.out, stand_in=stand_in)
            check_cells(cells, plan, {os.path.abspath(source.function): str(stand_in)}, note=False)  # run_grid notes
        except SpartaError as err:  # name the source's function, not its stand-in
            raise SpartaError(str(err).replace(str(stand_in), f"{source.function} (to be trained)")) from None
    return cells, source, cell


def run(args: argparse.Namespace) -> int:
    """Train the relu, sparta-scratch and sparta-frozen arms on the target, then write their table."""
    from sparta.experiments import EvalPlan, read_source, run_grid, write_table
    from sparta.experiments.transfer import frozen_function_changes
    from sparta.progress import warn

    seeds, plan = seed_list(args), eval_plan(args)
    cells, source, source_cell = _cells(args, seeds, plan)
    if source_cell is not None and not args.table_only:
        run_grid([source_cell], EvalPlan(()))
        read_source(source_cell.run_dir)  # trained to its last epoch, its function written
    title = f"Transfer ({args.kind}) of the Sparta function {source.function}"

    def table(chosen) -> str:
        text = write_table(chosen, plan, args.out, title)
        frozen, changed = frozen_function_changes(chosen)  # the claim rests on the function not moving
        if changed:
            warn(f"frozen function CHANGED in {len(changed)} of {frozen} frozen cells (first: {changed[0]})")
        elif frozen:
            text += f"\nfrozen function: bit-identical to the source's in all {frozen} trained frozen cells"
        return text

    return run_cells(cells, plan, args, table)
