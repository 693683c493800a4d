"""sparta train: every TrainConfig field is a flag (one table feeds CLI, API and config.json)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol

from sparta.commands._types import eps_value, option_value
from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.runfiles import MODEL_FILE, read_metrics

NAME = "train"
HELP = "train a model (standard, pgd, fgsm-rs or trades)"

# Flags whose type or spelling is not read off the TrainConfig field itself.
SPECIAL_FLAGS: dict[str, dict] = {
    "eps": {"type": eps_value, "help": "L-inf radius in pixel space, e.g. 0.1 or 8/255"},
    "attack_step_size": {"type": eps_value, "help": "training attack step (default 2.5 * eps / steps)"},
    "act_options": {
        "flags": ["--act-option"],
        "type": option_value,
        "action": "append",
        "help": "activation option KEY=VALUE, repeatable (e.g. phi=depthwise, or phi=constant: no attention)",
    },
    "channels_last": {
        "action": argparse.BooleanOptionalAction,
        "help": "channels_last memory format on or off (default: on for CUDA, off on the CPU)",
    },
    "freeze_sparta": {"action": "store_true"},
    "compile": {"action": "store_true"},
    "sync_bn": {"action": "store_true"},
    "attack_bn_mode": {
        "choices": ["train", "eval"],
        "help": "BatchNorm mode while crafting training attacks "
        "(default: the method's own: train for pgd and fgsm-rs, eval for trades)",
    },
}
_TYPES = {"int": int, "float": float}

# One line per setting: what it does (the default and, for names, the choices are added).
MEANING = {
    "out": "run directory to write",
    "dataset": "dataset name",
    "data_root": "folder of the dataset's files",
    "subset": "train on the first N images of a seeded shuffle (same N images for every run)",
    "model": "model name",
    "act": "activation name",
    "share": "Sparta sharing: one phi per layer, stage or network",
    "method": "training method",
    "attack_steps": "steps of the training attack",
    "trades_beta": "weight of TRADES' KL term",
    "eps_warmup_epochs": "grow eps linearly from 0 over these epochs",
    "epochs": "passes over the training (sub)set",
    "batch_size": "global batch size",
    "lr": "peak learning rate of the schedule",
    "momentum": "SGD momentum (Nesterov when > 0)",
    "weight_decay": "SGD weight decay",
    "schedule": "learning-rate schedule",
    "augment": "none, crop or crop-flip (default: the dataset's)",
    "seed": "seed of data order, init and attacks",
    "device": "auto, cpu or cuda",
    "precision": "auto (bf16 on CUDA), fp32 or bf16 (also on the CPU)",
    "compile": "torch.compile the model",
    "sync_bn": "SyncBatchNorm across torchrun processes (CUDA)",
    "sparta_from": "import the Sparta function of this run directory or file",
    "freeze_sparta": "keep the imported Sparta function fixed",
    "eval_every": "epochs between quick test evaluations (0: never)",
    "eval_n": "test images of the quick per-epoch evaluation (clean and PGD-10; at most the test set)",
}


def _choices(name: str) -> str:
    """The registered names a setting takes, for its help line ('' when it takes any value)."""
    from sparta.activations import ACTIVATIONS
    from sparta.data import DATASETS
    from sparta.models import MODELS
    from sparta.training.methods import METHODS
    from sparta.training.schedule import SCHEDULES

    found = {
        "act": ACTIVATIONS.names,
        "model": MODELS.names,
        "method": METHODS.names,
        "schedule": SCHEDULES.names,
        "dataset": lambda: list(DATASETS),
    }.get(name)
    return f"; one of: {', '.join(found())}" if found else ""


class FlagTable(Protocol):
    """What flags are added to: a parser or one of its argument groups."""

    def add_argument(self, *flags: str, **spec: Any) -> Any:
        """argparse's add_argument."""


def add_arguments(parser: FlagTable, skip: Iterable[str] = ()) -> None:
    """The train flags: --resume, --config and one flag per TrainConfig field, but those whose
    destination is in `skip` (a grid command replaces a few by its own)."""
    skip = set(skip)
    if "resume" not in skip:
        parser.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="finish a killed run from its last save (each epoch end and every 5 minutes)",
        )
    if "config" not in skip:
        parser.add_argument(
            "--config",
            metavar="CONFIG_JSON",
            help="start from the settings of this config.json (or run directory); the flags given "
            "beside it override them (give a new --out)",
        )
    for field in dataclasses.fields(TrainConfig):
        if field.name in skip:
            continue
        spec = dict(SPECIAL_FLAGS.get(field.name, {}))
        flags = spec.pop("flags", ["--" + field.name.replace("_", "-")])
        if "type" not in spec and "action" not in spec:
            spec["type"] = _TYPES.get(str(field.type).split(" |")[0], str)
        default = field.default if field.default is not dataclasses.MISSING else "{}"
        meaning = MEANING.get(field.name, "")
        spec.setdefault("help", f"{meaning}{_choices(field.name)} (default: {default})".replace("%", "%%"))
        parser.add_argument(*flags, dest=field.name, default=None, **spec)


def config_from_args(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    if "act_options" in given:
        given["act_options"] = dict(given["act_options"])
    return given


def run(args: argparse.Namespace) -> int:
    """Train one run from the flags (or resume a killed one) into its run directory."""
    from sparta.training.loop import train

    given = config_from_args(args)
    if args.resume:
        extra = ["--" + k.replace("_", "-") for k in given] + (["--config"] if args.config else [])
        if extra:
            raise SpartaError(f"--resume takes the settings from {args.resume}/config.json; drop {', '.join(extra)}")
        run_dir = train(TrainConfig.load(args.resume), resume=True)
    elif args.config:
        base = dataclasses.asdict(TrainConfig.read(args.config))
        if "method" in given and "attack_bn_mode" not in given:
            base["attack_bn_mode"] = None  # the new method's published mode, not the old run's
        run_dir = train(TrainConfig(**{**base, **given}))
    else:
        run_dir = train(TrainConfig(**given))
    if not (run_dir / MODEL_FILE).is_file():  # never report a run as trained without its model
        raise SpartaError(f"{run_dir} has no {MODEL_FILE} after training; nothing was saved")
    last = (read_metrics(run_dir) or [{}])[-1]
    shown = {k: round(v, 4) for k, v in last.items() if k.startswith(("test_", "train_"))}
    print(f"trained {run_dir}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0
