"""Trainability: the step at which PGD adversarial training leaves chance, per activation.

Adversarial training from the first step (no eps warm-up) starts on a plateau: the
prediction is constant and the loss is log(classes). A network that leaves it does so
within a few hundred steps; one that does not may never leave it. This runs the first
`--steps` steps of `sparta train`'s own loop (its `set_up` and `train_batch`, so the
schedule, optimizer, attack, precision and layout are the command's) for each activation
and seed, and prints the step at which the running accuracy over the last `--window`
batches first passes `--threshold` (the escape step), or "never".

    python benchmarks/trainability.py                      # the check's recipe, 300 steps
    python benchmarks/trainability.py --acts relu,sparta --seeds 0-4 --precision bf16 \
        --channels-last --act-option fused=plain --probe 25 --json out.json

The recipe (`--recipe check`) is the GPU check's 1-epoch command: SmallCNN on all of
Fashion-MNIST, PGD-10 at eps 0.1 from the first step, onecycle lr 0.05 over one epoch of
batch 128. With `--probe K` it also records, every K steps, what each Sparta site has
learned (beta, the mean and spread of T) and the scale of the logits: what
results/trainability.md reads to explain a stall.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import torch

from sparta.commands._types import option_value
from sparta.config import TrainConfig
from sparta.data import dataset_info, load_dataset
from sparta.runfiles import atomic_write_text
from sparta.runtime import autocast, seed_everything
from sparta.sparta_activation import Sparta
from sparta.training import distributed
from sparta.training.build import model_for, take_subset
from sparta.training.loader import DeviceLoader
from sparta.training.loop import set_up, train_batch
from sparta.training.methods import METHODS
from sparta.training.schedule import SCHEDULES

# Named recipes: TrainConfig fields. "check" is the GPU check's 1-epoch Sparta training.
RECIPES = {
    "check": dict(
        dataset="fashion-mnist", model="smallcnn", method="pgd", eps=0.1, attack_steps=10, epochs=1,
        batch_size=128, lr=0.05, schedule="onecycle", eps_warmup_epochs=0.0,
    ),
    "claim-a-cpu": dict(
        dataset="fashion-mnist", model="smallcnn", method="pgd", eps=0.1, attack_steps=5, epochs=5,
        batch_size=128, lr=0.05, schedule="onecycle", eps_warmup_epochs=1.0,
    ),
}  # fmt: skip


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,2,3' -> a list of seeds."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(part) for part in text.split(",")]


def site_stats(model: torch.nn.Module, x: torch.Tensor) -> list[dict]:
    """beta and the threshold map T's mean and spread at each Sparta site, on batch x."""
    stats, hooks = [], []
    for name, site in ((n, m) for n, m in model.named_modules() if isinstance(m, Sparta)):

        def record(module, inputs, _output, name=name):
            with torch.no_grad():
                t = module.threshold(inputs[0] if inputs[0].dim() == 4 else inputs[0][:, :, None, None])
                stats.append(
                    {
                        "site": name,
                        "beta": float(module.beta.float().mean()),
                        "t_mean": float(t.float().mean()),
                        "t_sd": float(t.float().std()),
                        "x_sd": float(inputs[0].float().std()),
                    }
                )

        hooks.append(site.register_forward_hook(record))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [*stats, {"site": "logits", "sd": float(logits.float().std(0).mean())}]


def run(config: TrainConfig, steps: int, window: int, threshold: float, probe: int, after: int | None = None) -> dict:
    """The first `steps` steps of `config`'s training (or `after` steps past the escape);
    the escape step and the trace."""
    config.validate()
    device = torch.device(config.device)
    info = dataset_info(config.dataset)
    images, labels = load_dataset(config.dataset, "train")
    images, labels = take_subset(images, labels, config.subset, config.seed)
    loader = DeviceLoader(images, labels, config.batch_size, config.seed, config.augment or info.augment, device)
    seed_everything(config.seed)  # then the model, as `sparta train` builds it
    model = model_for(config).to(device)
    fit = set_up(
        config, False, METHODS.get(config.method), SCHEDULES.get(config.schedule), distributed.Ranks(),
        device, loader, (images[:0], labels[:0]), model,
    )  # fmt: skip
    fit.model.train()
    recent: deque[float] = deque(maxlen=window)
    trace, probes, escape = [], [], None
    started = time.perf_counter()
    batches = iter(fit.loader.epoch(0))
    for step in range(1, steps + 1):
        x, y = next(batches)
        loss, right = train_batch(fit, x, y)
        recent.append(right / len(y))
        running = sum(recent) / len(recent)
        trace.append({"step": step, "loss": round(loss, 4), "acc": right / len(y)})
        if escape is None and len(recent) == window and running > threshold:
            escape = step
        if probe and (step == 1 or step % probe == 0):
            probes.append({"step": step, "sites": site_stats(fit.model, x[:64])})
            fit.model.train()
        if escape is not None and after is not None and step >= escape + after:
            break
    return {"escape": escape, "seconds": time.perf_counter() - started, "trace": trace, "probes": probes}


def site_path_of(config: TrainConfig) -> str:
    """The Sparta site path a run trains with on its device (relu: "-")."""
    if config.act != "sparta":
        return "-"
    from sparta.site import native as native_site
    from sparta.site import site_path

    x = torch.zeros(1, 4, 4, 4, device=config.device)
    with autocast(torch.device(config.device), config.precision):
        path = site_path(config.act_options.get("fused"), x)
    if path == "fused" and config.device == "cpu":
        path = "fused (native)" if native_site.available(x) else "fused (torch ops)"
    return path


def summarise(results: list[dict]) -> list[str]:
    """Per activation and setting: seeds that escaped, and the median escape step."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        config = result["config"]
        options = json.dumps(config["act_options"])
        layout = (config["precision"], config["channels_last"])
        key = (result["act"], config["model"], *layout, result["site_path"], options)
        groups.setdefault(key, []).append(result)
    lines = []
    for (act, model, precision, channels_last, path, options), group in groups.items():
        steps = [r["escape"] for r in group]
        escaped = sorted(s for s in steps if s is not None)
        median = statistics.median(escaped) if escaped else None
        layout = "channels_last" if channels_last else "NCHW"
        lines.append(
            f"{act} {model} {precision} {layout} {path} {options}: escaped {len(escaped)}/{len(steps)}, "
            f"median step {median}, steps {[s if s is not None else 'never' for s in steps]}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="check", choices=sorted(RECIPES))
    parser.add_argument("--model", default=None, help="another model than the recipe's (e.g. resnet20)")
    parser.add_argument("--acts", default="relu,sparta")
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--window", type=int, default=20, help="batches in the running accuracy")
    parser.add_argument("--threshold", type=float, default=0.25, help="running accuracy that counts as escaped")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--act-option", action="append", default=[], type=option_value, metavar="KEY=VALUE")
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probe", type=int, default=0, help="record site statistics every K steps (0: never)")
    parser.add_argument("--after-escape", type=int, default=None, help="stop this many steps after the escape")
    parser.add_argument(
        "--json", type=Path, default=None, help="keep every trace here; a rerun skips the runs it already holds"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text()) if args.json and args.json.is_file() else []
    for act in args.acts.split(","):
        for seed in parse_seeds(args.seeds):
            recipe = {**RECIPES[args.recipe], **({"model": args.model} if args.model else {})}
            config = TrainConfig(
                **recipe, act=act, seed=seed, precision=args.precision,
                channels_last=args.channels_last, act_options=dict(args.act_option) if act != "relu" else {},
                subset=args.subset, device=args.device, out="/nonexistent",
            )  # fmt: skip
            settings = {"config": dataclasses.asdict(config), "steps": args.steps, "window": args.window,
                        "threshold": args.threshold, "after_escape": args.after_escape}  # fmt: skip
            if any(all(r.get(k) == v for k, v in settings.items()) for r in results):
                continue  # measured by an earlier call
            result = run(config, args.steps, args.window, args.threshold, args.probe, args.after_escape)
            escape = result["escape"] if result["escape"] is not None else "never"
            tail = result["trace"][-args.window :]
            last = sum(r["acc"] for r in tail) / len(tail)
            print(
                f"{act:8s} seed {seed}: escape step {escape!s:>5s}; running accuracy at step {len(result['trace'])} "
                f"{100 * last:5.1f}% ({result['seconds']:.0f} s)",
                flush=True,
            )
            results.append({"act": act, "seed": seed, "site_path": site_path_of(config), **settings, **result})
            if args.json:
                atomic_write_text(args.json, json.dumps(results))
    print("\n".join(summarise(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
