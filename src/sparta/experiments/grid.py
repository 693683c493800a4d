"""A grid of training runs (cells) that can be killed and rerun: finished cells are skipped.

Each cell is one TrainConfig plus the evaluation asked for; its run directory is
OUT/<cell name>. Rerunning a grid walks every cell through these states:

- done: eval.json holds every requested attack at the cell's eps for the requested n;
  nothing is trained or evaluated.
- trained: model.safetensors reached the last epoch; only the missing attacks run.
- resume: checkpoint.safetensors exists but the run stopped early;
  ``train(config, resume=True)`` finishes it from its last save (an epoch's end, or
  inside an epoch).
- restart: config.json but no checkpoint (killed before its first save); the run's files
  are removed and it trains from scratch.
- new: nothing there yet.

A directory whose config.json differs from the cell's settings is an error, never
overwritten: the old results would be mixed with the new ones.

Every Sparta cell holds its Sparta function in sparta.safetensors (the training loop
writes it), so that ``--sparta-from RUN_DIR`` can reuse it; ``export_function`` writes it
for runs that predate that.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparta.activations import ACTIVATIONS
from sparta.attacks import ATTACKS
from sparta.checkpoint import check_run_model, load_checkpoint, read_checkpoint_header
from sparta.config import TrainConfig
from sparta.data import split_size
from sparta.errors import SpartaError
from sparta.evaluation import evaluate_run
from sparta.locks import reading_run, run_lock
from sparta.models import MODELS
from sparta.progress import capped, say
from sparta.runfiles import (
    CONFIG_FILE,
    MODEL_FILE,
    RUN_FILES,
    SPARTA_FILE,
    STATE_FILE,
    atomic_write,
    find_record,
    read_eval_records,
)
from sparta.sharing import export_sparta
from sparta.training.build import check_settings
from sparta.training.loop import train
from sparta.training.methods import METHODS

# A restarted cell loses exactly the files a training run writes (runfiles.RUN_FILES).
# Settings that only a Sparta activation reads; other activations get the defaults.
SPARTA_ONLY = ("act_options", "sparta_from", "freeze_sparta")

Log = Callable[[str], None]


@dataclass
class Cell:
    """One training run of a grid: its directory name, settings, and the row it belongs to.

    `labels` name the table row (e.g. model, act, method); cells that differ only in
    seed share them and are averaged together.
    """

    name: str
    config: TrainConfig
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)


@dataclass(frozen=True)
class EvalPlan:
    """The attacks every cell is evaluated with, on the first n test images (None: all)."""

    attacks: tuple[str, ...]
    n: int | None = None
    batch_size: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "attacks", tuple(canonical_attack(a) for a in self.attacks))
        if len(set(self.attacks)) != len(self.attacks):
            raise SpartaError(f"an attack is listed twice: {', '.join(self.attacks)}")
        if self.n is not None and self.n < 1:
            raise SpartaError(f"--n must be >= 1, got {self.n}")
        if self.batch_size < 1:
            raise SpartaError(f"--eval-batch-size must be >= 1, got {self.batch_size}")


def canonical_attack(name: str) -> str:
    """The registry name of an attack, or 'clean'."""
    return "clean" if name.strip().lower() == "clean" else ATTACKS.canonical(name)


def cell_name(*parts: object, seed: int) -> str:
    """A readable directory name, e.g. smallcnn-sparta-pgd-seed0 (safe characters only)."""
    text = "-".join([*(str(p) for p in parts), f"seed{seed}"])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def for_activation(config: TrainConfig, act: str) -> TrainConfig:
    """`config` with activation `act`; Sparta-only settings are cleared for the others."""
    act = ACTIVATIONS.canonical(act)
    if act == "sparta":
        return dataclasses.replace(config, act=act)
    defaults = TrainConfig()
    return dataclasses.replace(config, act=act, **{name: getattr(defaults, name) for name in SPARTA_ONLY})


def grid_cells(
    base: TrainConfig,
    out: str | Path,
    acts: Sequence[str],
    seeds: Sequence[int],
    models: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> list[Cell]:
    """Cells for models x methods x seeds x acts, in that nesting order: every activation of
    seed 0 before seed 1, so a grid stopped part-way leaves paired seeds (rows keep the
    given order of activations)."""
    models = [MODELS.canonical(m) for m in (models or [base.model])]
    methods = [METHODS.canonical(m) for m in (methods or [base.method])]
    acts = [ACTIVATIONS.canonical(a) for a in acts]
    for kind, names in (("model", models), ("method", methods), ("activation", acts), ("seed", seeds)):
        if not names:
            raise SpartaError(f"the grid needs at least one {kind}")
        if len(set(names)) != len(names):
            raise SpartaError(f"a {kind} is listed twice: {', '.join(map(str, names))}")
    cells = []
    for model in models:
        for method in methods:
            for seed in seeds:
                for act in acts:
                    name = cell_name(model, act, method, seed=seed)
                    config = dataclasses.replace(
                        for_activation(base, act), model=model, method=method, seed=seed, out=str(Path(out) / name)
                    )
                    cells.append(Cell(name, config.validate(), {"model": model, "act": act, "method": method}))
    return cells


# --------------------------------------------------------------------------------------
# Cell state


def epochs_done(run_dir: Path) -> int:
    """Epochs reached by the saved model (0 when there is none)."""
    if not (run_dir / MODEL_FILE).is_file():
        return 0
    return int(read_checkpoint_header(run_dir)["meta"].get("epoch", 0))


def missing_attacks(cell: Cell, plan: EvalPlan, n: int) -> list[str]:
    """The plan's attacks the cell has no eval record of at its eps and n."""
    records = read_eval_records(cell.run_dir)
    return [a for a in plan.attacks if find_record(records, a, cell.config.eps, n) is None]


TRAINING_STATES = {"new": "trained", "restart": "restarted and trained", "resume": "resumed"}  # -> the log's word


def cell_state(cell: Cell, plan: EvalPlan, n: int) -> str:
    """One of: new, restart, resume, trained, done (see the module docstring)."""
    run_dir = cell.run_dir
    if not (run_dir / CONFIG_FILE).is_file():
        return "new"
    saved = TrainConfig.load(run_dir)
    if saved != cell.config:
        changed = [
            f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(cell.config, f.name)
        ]
        raise SpartaError(
            f"{run_dir} holds a run with other settings ({', '.join(changed)}); "
            "use another --out or remove that directory"
        )
    missing = missing_attacks(cell, plan, n)
    if not missing and (plan.attacks or epochs_done(run_dir) >= cell.config.epochs):
        return "done"  # every result is there, whether or not the weights were kept
    if epochs_done(run_dir) >= cell.config.epochs:
        return "trained"
    if (run_dir / STATE_FILE).is_file():
        return "resume"
    if read_eval_records(run_dir):  # a restart would throw these results away
        raise SpartaError(
            f"{run_dir} has evaluation results but no model to run {', '.join(missing)} on "
            "(its weights were not kept); evaluate where the model is, or remove the directory"
        )
    return "restart"


# --------------------------------------------------------------------------------------
# Running


def export_function(run_dir: Path) -> Path:
    """Write RUN_DIR/sparta.safetensors from the run's model (atomically), for older runs."""
    model, _ = load_checkpoint(run_dir)
    path = run_dir / SPARTA_FILE
    atomic_write(path, lambda tmp: export_sparta(model, tmp))
    return path


def _clear_run(run_dir: Path) -> None:
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


def eval_size(config: TrainConfig, plan: EvalPlan) -> int:
    """The n that eval.json records carry for this plan: n = None or n > the test set means all."""
    size = split_size(config.dataset, "test", config.data_root)
    return size if plan.n is None else min(plan.n, size)


def check_cells(
    cells: Sequence[Cell], plan: EvalPlan, stand_ins: Mapping[str, str] | None = None, note: bool = True
) -> None:
    """Whatever would stop the grid partway, checked for every cell before any trains: a
    directory holding other settings, results without a model, a model file of another
    architecture, and every check `train` makes of the settings of the cells still to
    train (data set and subset, schedule, model, the Sparta function imported). `stand_ins`
    maps a `sparta_from` not written yet (a transfer source still to train) to a file of
    the same function shape to check it with. A --n above a data set's test set gets a note
    (unless `note` is False: a caller that checks the cells before `run_grid` does again)."""
    checked: set[str] = set()
    for dataset, root in dict.fromkeys((cell.config.dataset, cell.config.data_root) for cell in cells):
        if plan.n is not None and note:
            size = split_size(dataset, "test", root)
            capped(plan.n, size, "--n", f"the {size} test images of {dataset}")
    for cell in cells:
        state = cell_state(cell, plan, eval_size(cell.config, plan))
        check_run_model(cell.run_dir, cell.config)
        if state not in TRAINING_STATES:
            continue
        config = cell.config
        if config.sparta_from and stand_ins and config.sparta_from in stand_ins:
            config = dataclasses.replace(config, sparta_from=stand_ins[config.sparta_from])
        key = dataclasses.replace(config, seed=0, out="").to_json()  # the seed changes no check
        if key not in checked:
            checked.add(key)
            check_settings(config)


def run_cell(cell: Cell, plan: EvalPlan) -> str:
    """Bring one cell to done; returns what was done, for the log.

    A cell still to train is held alone while it trains and is evaluated: grids that reach
    the same cell (shards sharing a source run) take turns, and the second finds it done.
    A cell already trained is evaluated under the shared lock, beside other evaluations
    (`sparta eval`), once no process holds it alone; a finished one is only read, so a grid
    passes cells that another process is evaluating instead of waiting for it to end.
    """
    n = eval_size(cell.config, plan)
    state = cell_state(cell, plan, n)
    if state == "done":
        return "done, skipped"
    if state in TRAINING_STATES:
        with run_lock(cell.run_dir, wait=True):
            return _bring_to_done(cell, plan, n)
    with reading_run(cell.run_dir, wait=True):  # behind a process that holds it alone, if one does
        return _bring_to_done(cell, plan, n)


def _bring_to_done(cell: Cell, plan: EvalPlan, n: int) -> str:
    state = cell_state(cell, plan, n)  # again: another process may have moved it on
    done = []
    if state in TRAINING_STATES:
        if state == "restart":
            _clear_run(cell.run_dir)
        train(cell.config, resume=state == "resume")
        done.append(TRAINING_STATES[state])
    attacks = missing_attacks(cell, plan, n)
    if attacks:
        evaluate_run(
            cell.run_dir,
            attacks,
            n=n,
            device=cell.config.device,
            batch_size=plan.batch_size,
            data_root=cell.config.data_root,
            on_attack=lambda name, count: say(f"{cell.name}: {name} running on {count} test images ..."),
        )
        done.append("evaluated " + ",".join(attacks))
    return ", ".join(done) or "done, skipped"


def print_now(line: str) -> None:
    """A grid's log line, flushed at once: a grid runs for hours with its output in a file,
    and a line left in the buffer is lost when the run is killed."""
    print(line, flush=True)


def run_grid(cells: Sequence[Cell], plan: EvalPlan, log: Log = print_now) -> None:
    """Run every cell to done, in order; a rerun skips what is finished."""
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise SpartaError(f"two cells share a name: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    check_cells(cells, plan)
    for index, cell in enumerate(cells, start=1):
        log(f"[{index}/{len(cells)}] {cell.name}: {run_cell(cell, plan)}")
