"""The `sparta` command line: train, eval, download (DESIGN.md section 3).

Every failure the user can fix prints one line, `sparta: error: ...`, and exits with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sparta.attacks import parse_eps
from sparta.config import TrainConfig
from sparta.errors import SpartaError

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command, str]] = {}


def command(name: str, help: str):
    def register(pair):
        add_arguments, run = pair
        COMMANDS[name] = (add_arguments, run, help)
        return pair

    return register


def _option_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, true/false), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key.replace("-", "_"), json.loads(raw)
    except json.JSONDecodeError:
        return key.replace("-", "_"), raw


def _eps(text: str) -> float:
    try:
        return parse_eps(text)
    except SpartaError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


# Flags whose type or spelling is not read off the TrainConfig field itself.
SPECIAL_FLAGS: dict[str, dict[str, Any]] = {
    "eps": {"type": _eps, "help": "L-inf radius in pixel space, e.g. 0.1 or 8/255"},
    "attack_step_size": {"type": _eps, "help": "training attack step (default 2.5 * eps / steps)"},
    "act_options": {"flags": ["--act-option"], "type": _option_value, "action": "append",
                    "help": "activation option KEY=VALUE, repeatable (e.g. phi=depthwise)"},
    "channels_last": {"type": _bool}, "freeze_sparta": {"action": "store_true"},
    "compile": {"action": "store_true"},
}


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish a killed run from its last epoch")
    for field in dataclasses.fields(TrainConfig):
        spec = dict(SPECIAL_FLAGS.get(field.name, {}))
        flags = spec.pop("flags", ["--" + field.name.replace("_", "-")])
        if "type" not in spec and "action" not in spec:
            spec["type"] = {"int": int, "float": float}.get(str(field.type).split(" |")[0], str)
        spec.setdefault("help", f"default: {field.default if field.default is not dataclasses.MISSING else '{}'}")
        parser.add_argument(*flags, dest=field.name, default=None, **spec)


def _run_train(args: argparse.Namespace) -> int:
    from sparta.training.loop import train

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    if args.resume:
        if given:
            raise SpartaError(f"--resume takes the settings from {args.resume}/config.json; "
                              f"drop {', '.join('--' + k.replace('_', '-') for k in given)}")
        config = TrainConfig.load(args.resume)
        run_dir = train(config, resume=True)
    else:
        if "act_options" in given:
            given["act_options"] = dict(given["act_options"])
        run_dir = train(TrainConfig(**given))
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    shown = {k: round(v, 4) for k, v in last.items() if k.startswith(("test_", "train_"))}
    print(f"trained {run_dir}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return 0


command("train", "train a model (standard, pgd, fgsm-rs or trades)")((_add_train, _run_train))


def _add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--attacks", default="clean,pgd", help="comma list of clean,fgsm,pgd,cw,autoattack,square")
    parser.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--eps", type=_eps, default=None, help="default: the run's training eps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--data-root", default=None)


def _run_eval(args: argparse.Namespace) -> int:
    from sparta.evaluation import evaluate_run

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    records = evaluate_run(args.run_dir, attacks, n=args.n, eps=args.eps, device=args.device,
                           batch_size=args.batch_size, data_root=args.data_root)
    for record in records:
        print(f"{record['attack']:<11} eps={record['eps']:.4f}  accuracy={100 * record['accuracy']:6.2f}%  "
              f"n={record['n']}  ({record['seconds']:.1f}s)")
    return 0


command("eval", "evaluate a run directory under attacks; writes eval.json")((_add_eval, _run_eval))


def _add_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("--data-root", default=None)


def _run_download(args: argparse.Namespace) -> int:
    from sparta.data import download_dataset

    for path in download_dataset(args.name, args.data_root):
        print(path)
    return 0


command("download", "download a dataset and check its checksums")((_add_download, _run_download))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparta", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _, help) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except SpartaError as err:
        print(f"sparta: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparta: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
