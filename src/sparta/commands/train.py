"""sparta train: every TrainConfig field is a flag (one table feeds CLI, API and config.json)."""

from __future__ import annotations

import argparse
import dataclasses

from sparta.commands._types import bool_value, eps_value, option_value
from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.runfiles import read_metrics

NAME = "train"
HELP = "train a model (standard, pgd, fgsm-rs or trades)"

# Flags whose type or spelling is not read off the TrainConfig field itself.
SPECIAL_FLAGS: dict[str, dict] = {
    "eps": {"type": eps_value, "help": "L-inf radius in pixel space, e.g. 0.1 or 8/255"},
    "attack_step_size": {"type": eps_value, "help": "training attack step (default 2.5 * eps / steps)"},
    "act_options": {"flags": ["--act-option"], "type": option_value, "action": "append",
                    "help": "activation option KEY=VALUE, repeatable (e.g. phi=depthwise)"},
    "channels_last": {"type": bool_value}, "freeze_sparta": {"action": "store_true"},
    "compile": {"action": "store_true"}, "sync_bn": {"action": "store_true"},
}
_TYPES = {"int": int, "float": float}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish a killed run from its last epoch")
    for field in dataclasses.fields(TrainConfig):
        spec = dict(SPECIAL_FLAGS.get(field.name, {}))
        flags = spec.pop("flags", ["--" + field.name.replace("_", "-")])
        if "type" not in spec and "action" not in spec:
            spec["type"] = _TYPES.get(str(field.type).split(" |")[0], str)
        default = field.default if field.default is not dataclasses.MISSING else "{}"
        spec.setdefault("help", f"default: {default}")
        parser.add_argument(*flags, dest=field.name, default=None, **spec)


def config_from_args(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if "act_options" in given:
        given["act_options"] = dict(given["act_options"])
    return given


def run(args: argparse.Namespace) -> int:
    from sparta.training.loop import train

    given = config_from_args(args)
    if args.resume:
        if given:
            raise SpartaError(f"--resume takes the settings from {args.resume}/config.json; "
                              f"drop {', '.join('--' + k.replace('_', '-') for k in given)}")
        run_dir = train(TrainConfig.load(args.resume), resume=True)
    else:
        run_dir = train(TrainConfig(**given))
    last = read_metrics(run_dir)[-1]
    shown = {k: round(v, 4) for k, v in last.items() if k.startswith(("test_", "train_"))}
    print(f"trained {run_dir}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0
