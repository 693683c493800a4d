"""One typed configuration feeds the CLI, the Python API and config.json."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE

# Settings a config.json must state (files of every earlier version hold them): without
# them a default would stand in silently for what the run was.
RECORDED_SETTINGS = ("dataset", "model", "act", "method", "eps", "epochs", "seed")
# `model` and `act` of a run of a model of the caller's own (sparta.train(config, model=...))
CUSTOM_MODEL = "custom"


@dataclass
class TrainConfig:
    """Everything needed to rebuild the model and redo the run.

    Units: eps and step sizes in [0, 1] pixel space; lr is the peak learning rate of the
    schedule; epochs counts passes over the (sub)set.
    """

    out: str = "runs/run"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    subset: int | None = None  # first N of a seeded shuffle of the training set
    model: str = "smallcnn"
    act: str = "sparta"
    act_options: dict[str, Any] = field(default_factory=dict)
    share: str = "stage"
    method: str = "pgd"
    eps: float = 0.1
    attack_steps: int = 10
    attack_step_size: float | None = None  # None: 2.5 * eps / steps (Madry et al.)
    # BatchNorm mode while crafting training attacks; None: the method's published choice
    # (train for pgd and fgsm-rs as in Madry et al.'s code, eval for trades as in Zhang et al.'s)
    attack_bn_mode: str | None = None
    trades_beta: float = 6.0
    eps_warmup_epochs: float = 0.0  # eps grows linearly from 0 over this many epochs
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    augment: str | None = None  # none, crop, crop-flip; None: the dataset's default
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    sparta_from: str | None = None
    freeze_sparta: bool = False
    eval_every: int = 1  # epochs between quick test evaluations (0: never)
    eval_n: int = 1000  # test images in the quick per-epoch evaluation

    def __post_init__(self) -> None:
        # One spelling of the imported function's path whatever the working directory;
        # config.json records it relative to the run directory (to_json), so a run and its
        # source stay checkable wherever the folder that holds both is copied.
        if isinstance(self.sparta_from, str) and self.sparta_from:
            self.sparta_from = os.path.abspath(self.sparta_from)

    def validate(self) -> TrainConfig:
        """Check every setting (one clear error each) and fill the method-dependent default
        of attack_bn_mode, so config.json records the mode a run used."""
        self._check_types()
        for ok, message in self._range_checks():
            if not ok:
                raise SpartaError(message)
        self._check_names()
        if self.attack_bn_mode is None:
            from sparta.training.methods import published_attack_bn_mode

            self.attack_bn_mode = published_attack_bn_mode(self.method)
        return self

    def _range_checks(self) -> list[tuple[object, str]]:
        """(holds, the message if it does not) for every setting with a range or a set of values."""
        return [
            (0.0 <= self.eps <= 1.0, f"eps must lie in [0, 1], got {self.eps}"),
            (
                self.attack_step_size is None or 0 < self.attack_step_size <= 1,
                f"attack step size must lie in (0, 1], got {self.attack_step_size}",
            ),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.trades_beta >= 0, f"trades beta must be >= 0, got {self.trades_beta}"),
            (self.eps_warmup_epochs >= 0, f"eps warm-up epochs must be >= 0, got {self.eps_warmup_epochs}"),
            (self.eval_every >= 0, f"eval every must be >= 0 epochs, got {self.eval_every}"),
            (self.eval_n >= 1, f"eval n must be >= 1 test image, got {self.eval_n}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.attack_steps >= 1, f"attack steps must be >= 1, got {self.attack_steps}"),
            (self.subset is None or self.subset >= 1, f"subset must be >= 1, got {self.subset}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}"),
            (
                self.attack_bn_mode in (None, "train", "eval"),
                f"attack BatchNorm mode must be train or eval, got '{self.attack_bn_mode}'",
            ),
            (
                self.precision in ("auto", "fp32", "bf16"),
                f"precision must be auto, fp32 or bf16, got '{self.precision}'",
            ),
            (not self.freeze_sparta or self.sparta_from, "--freeze-sparta needs --sparta-from FILE_OR_RUN_DIR"),
        ]

    def _check_types(self) -> None:
        """Values from config.json or the Python API have the field's type, and numbers are
        finite: "epochs": "ten" or "lr": NaN fail here with the setting's name."""
        kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            declared = str(item.type).replace(" ", "").split("|")
            if value is None and "None" in declared:
                continue
            base = declared[0].split("[")[0]
            allowed = kinds.get(base, (object,))
            if (isinstance(value, bool) and base != "bool") or not isinstance(value, allowed):
                raise SpartaError(
                    f"setting {item.name} must be {' or '.join(declared)}, got {value!r} ({type(value).__name__})"
                )
            if base == "float" and isinstance(value, int | float) and not math.isfinite(value):
                raise SpartaError(f"setting {item.name} must be a finite number, got {value}")

    def _check_names(self) -> None:
        """Unknown names fail here, before any data is read."""
        from sparta.activations import ACTIVATIONS
        from sparta.data import dataset_info
        from sparta.models import MODELS
        from sparta.sharing import SHARE_MODES
        from sparta.training.methods import METHODS
        from sparta.training.schedule import SCHEDULES

        dataset_info(self.dataset)
        own = self.model == CUSTOM_MODEL
        for registry, name in (
            (MODELS, None if own else self.model),
            (ACTIVATIONS, None if own else self.act),
            (METHODS, self.method),
            (SCHEDULES, self.schedule),
        ):
            if name is not None:
                registry.canonical(name)
        if not own:  # activation options are checked by building one site
            from sparta.activations import create_activation

            create_activation(self.act, 64, **self.act_options)
        if self.share not in SHARE_MODES:
            raise SpartaError(f"unknown Sparta share mode '{self.share}'; choose from: {', '.join(SHARE_MODES)}")

    @property
    def attack_bn_training(self) -> bool:
        """Whether training attacks run with BatchNorm in train mode (see attack_bn_mode)."""
        from sparta.training.methods import published_attack_bn_mode

        return (self.attack_bn_mode or published_attack_bn_mode(self.method)) == "train"

    @property
    def step_size(self) -> float:
        """The training attack's step: attack_step_size, else 2.5 * eps / steps (Madry et al.)."""
        from sparta.training.methods import madry_step_size

        return madry_step_size(self.eps, self.attack_steps) if self.attack_step_size is None else self.attack_step_size

    def to_json(self) -> str:
        """The settings as config.json text (sorted keys), as a run directory stores them;
        `sparta_from` relative to the run directory (`out`), as `read` takes it back."""
        values = dataclasses.asdict(self)
        if isinstance(self.sparta_from, str) and self.sparta_from and self.out:
            try:
                values["sparta_from"] = os.path.relpath(self.sparta_from, os.path.abspath(self.out))
            except ValueError:  # another drive (Windows): no relative path exists
                pass
        return json.dumps(values, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from config.json's values; an unknown key is a SpartaError, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpartaError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def read(cls, path: str | Path) -> TrainConfig:
        """The settings in a config.json file (or a run directory's), as written."""
        path = Path(path)
        file = path / CONFIG_FILE if path.is_dir() else path
        if not file.is_file():
            raise SpartaError(
                f"{path} is not a run directory (no {CONFIG_FILE})"
                if path.is_dir() or not path.suffix
                else f"{file} does not exist"
            )
        try:
            values = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SpartaError(f"{file} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise SpartaError(f"{file} must hold a JSON object of settings, got {type(values).__name__}")
        source = values.get("sparta_from")
        if isinstance(source, str) and source and not os.path.isabs(source):  # relative to the run directory
            values["sparta_from"] = os.path.join(file.parent, source)
        missing = [key for key in RECORDED_SETTINGS if key not in values]
        if missing:  # a default here would silently train or evaluate something else
            raise SpartaError(
                f"{file} lacks the setting(s) {', '.join(missing)}: a run's config.json records "
                "every setting that decides what the run is"
            )
        return cls.from_dict(values)

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainConfig:
        """The run's settings; `out` is where the run is now (a run directory can be moved or copied)."""
        if not (Path(run_dir) / CONFIG_FILE).is_file():
            raise SpartaError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
        return dataclasses.replace(cls.read(run_dir), out=str(Path(run_dir)))
