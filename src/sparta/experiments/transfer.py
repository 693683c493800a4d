"""Transfer of a trained Sparta function: to another CNN, or to another dataset.

The paper claims that a Sparta function, once trained, can be fixed and reused in
another CNN or on another dataset. The test is three arms on the target, each over the
same seeds and trained the same way:

- relu: the target CNN with ReLU (the baseline);
- sparta-scratch: Sparta trained from scratch with the target (same share mode and
  options as the source, so only the training differs);
- sparta-frozen: the source's Sparta function imported and frozen (phi and beta never
  change; only the CNN around it is trained).

Decisions:
- The target is trained with the given training settings (like `sparta train`), not
  with the source's: the source contributes only its Sparta function, share mode and
  Sparta options.
- The share mode is the source's, so that the function's stages exist in the target.
  SmallCNN -> ResNet needs share='network' (no stage names in common); ResNet-18 ->
  ResNet-34 works stage to stage; share='layer' fits only the same architecture.
  A mismatch is found by importing the function into the target before anything trains.
- A source trained here (no --source) uses share='stage' when source and target
  models have the same stage names, else 'network'. --data-root names one dataset's
  folder, so it is the target's; the source reads its own default root ($SPARTA_DATA
  or the dataset's default) unless it uses the target's dataset.
- cross-cnn changes the model (the dataset stays the source's); cross-dataset changes
  the dataset (the model stays the source's). A source file does not say its model or
  dataset, so then both targets must be given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from sparta.activations import ACTIVATIONS
from sparta.checkpoint import check_run_model
from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.experiments.grid import Cell, cell_name, epochs_done, export_function, for_activation
from sparta.models import MODELS, build_model
from sparta.registry import Registry
from sparta.runfiles import SPARTA_FILE
from sparta.sharing import model_stages
from sparta.training.build import model_for

# kind -> the target setting that the kind changes
KINDS: dict[str, str] = {"cross-cnn": "model", "cross-dataset": "dataset"}
SOURCE_DIR = "source"


@dataclass(frozen=True)
class Source:
    """A trained Sparta function and what a target needs to host it."""

    function: Path  # the sparta.safetensors file
    share: str
    act_options: dict[str, Any]
    model: str | None = None  # None when the source is a bare file
    dataset: str | None = None


def _file_share(path: Path) -> str:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {})["sparta"])["share"]
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise SpartaError(f"{path} is not a Sparta function file ({type(err).__name__}: {err})") from None


def read_source(path: str | Path, act_options: dict[str, Any] | None = None) -> Source:
    """A Sparta run directory (its function, share and options) or a Sparta function file.

    A file records its share mode but not the Sparta options; `act_options` gives them
    (the defaults when None), and a mismatch is reported when the function is imported.
    """
    path = Path(path)  # as given: a relative source keeps the cells' configs valid wherever the tree is
    if path.is_file():
        return Source(path, _file_share(path), dict(act_options or {}))
    config = TrainConfig.load(path)
    if ACTIVATIONS.canonical(config.act) != "sparta":
        raise SpartaError(f"{path} is a '{config.act}' run; a transfer source must use Sparta")
    check_run_model(path, config)
    if epochs_done(path) < config.epochs:
        raise SpartaError(f"{path} has not finished training ({epochs_done(path)} of {config.epochs} epochs)")
    function = path / SPARTA_FILE
    if not function.is_file():
        export_function(path)
    return Source(function, config.share, dict(config.act_options), config.model, config.dataset)


def default_share(source_model: str, target_model: str) -> str:
    """'stage' when both models have the same stage names, else 'network' (fits any CNN)."""
    names = [list(model_stages(build_model(m, "relu", image_size=32))) for m in (source_model, target_model)]
    return "stage" if names[0] == names[1] else "network"


def planned_source(cell: Cell) -> Source:
    """The Source that the source cell `cell` will be once trained (read_source of its directory)."""
    config = cell.config
    return Source(cell.run_dir / SPARTA_FILE, config.share, dict(config.act_options), config.model, config.dataset)


def source_cell(
    base: TrainConfig, out: str | Path, model: str, dataset: str, share: str, data_root: str | None = None
) -> Cell:
    """The Sparta run to transfer from, when none is given: OUT/source-<model>-<dataset>-seed<S>."""
    config = dataclasses.replace(
        for_activation(base, "sparta"), model=MODELS.canonical(model), dataset=dataset, share=share, data_root=data_root
    )
    name = cell_name(SOURCE_DIR, config.model, dataset, seed=config.seed)
    config = dataclasses.replace(config, out=str(Path(out) / name))
    return Cell(name, config.validate(), {"arm": "source", "model": config.model, "dataset": dataset})


# --------------------------------------------------------------------------------------
# Arms: name -> the target config of that arm

Arm = Callable[[TrainConfig, Source], TrainConfig]
ARMS: Registry[Arm] = Registry("transfer arm")


@ARMS.register("relu")
def _relu_arm(target: TrainConfig, source: Source) -> TrainConfig:
    return for_activation(target, "relu")


@ARMS.register("sparta-scratch")
def _scratch_arm(target: TrainConfig, source: Source) -> TrainConfig:
    return dataclasses.replace(
        for_activation(target, "sparta"),
        share=source.share,
        act_options=dict(source.act_options),
        sparta_from=None,
        freeze_sparta=False,
    )


@ARMS.register("sparta-frozen")
def _frozen_arm(target: TrainConfig, source: Source) -> TrainConfig:
    return dataclasses.replace(_scratch_arm(target, source), sparta_from=str(source.function), freeze_sparta=True)


def target_config(base: TrainConfig, kind: str, source: Source, model: str | None, dataset: str | None) -> TrainConfig:
    """`base` on the target model and dataset; the one that `kind` changes must be given."""
    if kind not in KINDS:
        raise SpartaError(f"unknown transfer kind '{kind}'; choose from: {', '.join(KINDS)}")
    changed = KINDS[kind]
    given = {"model": model, "dataset": dataset}
    if given[changed] is None:
        raise SpartaError(f"--kind {kind} needs --target-{changed}")
    model = MODELS.canonical(model) if model else source.model
    dataset = dataset or source.dataset
    if model is None or dataset is None:
        raise SpartaError(
            f"the source {source.function} is a bare file that does not name its "
            f"{'model' if model is None else 'dataset'}: give --target-model and --target-dataset"
        )
    was = {"model": source.model, "dataset": source.dataset}[changed]
    if was == {"model": model, "dataset": dataset}[changed]:
        raise SpartaError(f"--kind {kind} needs a target {changed} other than the source's ({was})")
    return dataclasses.replace(base, model=model, dataset=dataset)


def arm_cells(
    target: TrainConfig,
    source: Source,
    seeds: Sequence[int],
    out: str | Path,
    arms: Sequence[str] = tuple(ARMS),
    stand_in: Path | None = None,
) -> list[Cell]:
    """Cells for arms x seeds on the target, seed by seed (every arm of seed 0, then of seed
    1, ...: an experiment stopped part-way leaves paired seeds, not one arm's seeds alone);
    checks first that the function fits the target. `stand_in`: a function file of the
    source's shape to check with while the source's own is not written yet (a source still
    to train)."""
    cells = []
    for seed in seeds:
        for arm in (ARMS.canonical(a) for a in arms):
            name = cell_name(arm, target.model, target.dataset, seed=seed)
            config = dataclasses.replace(ARMS.get(arm)(target, source), seed=seed, out=str(Path(out) / name))
            cells.append(Cell(name, config.validate(), {"arm": arm, "model": target.model, "dataset": target.dataset}))
    for cell in cells:
        if cell.config.sparta_from:
            checked = cell.config if stand_in is None else dataclasses.replace(cell.config, sparta_from=str(stand_in))
            model_for(checked)  # raises a one-line SpartaError when stages or shapes differ
            break
    return cells


def frozen_function_change(run_dir: str | Path) -> str | None:
    """For a run trained with a frozen imported function: None when every tensor of its
    source's function file is bit-identical in the run's function (RUN/sparta.safetensors),
    else what differs. The claim rests on the function not having moved in training."""
    from safetensors.torch import load_file

    from sparta.sharing import sparta_file

    config = TrainConfig.load(run_dir)
    if not (config.freeze_sparta and config.sparta_from):
        raise SpartaError(f"{run_dir} did not train with a frozen imported Sparta function")
    source = load_file(sparta_file(config.sparta_from))
    if not (Path(run_dir) / SPARTA_FILE).is_file():
        export_function(Path(run_dir))
    kept = load_file(Path(run_dir) / SPARTA_FILE)
    missing = sorted(set(source) - set(kept))
    if missing:
        return f"{len(missing)} of the source's tensors are not in the run's function (first: {missing[0]})"
    moved = sorted(name for name in source if not torch.equal(source[name], kept[name]))
    if moved:
        return f"{len(moved)} of {len(source)} tensors differ from the source's (first: {moved[0]})"
    return None


def frozen_function_changes(cells: Sequence[Cell]) -> tuple[int, list[str]]:
    """(how many frozen cells have finished training, one line per such cell whose
    function is not bit-identical to its source's)."""
    frozen = [c for c in cells if c.config.freeze_sparta and epochs_done(c.run_dir) >= c.config.epochs]
    changed = [f"{cell.name}: {change}" for cell in frozen if (change := frozen_function_change(cell.run_dir))]
    return len(frozen), changed
