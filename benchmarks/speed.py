"""Speed: what Sparta costs over ReLU, and how fast sparta's PGD adversarial training runs.

0. One site (`--parts site`): forward + backward of one Sparta activation against one
   ReLU on the same feature map, for the plain reference and the device's default path
   (and on CUDA the Triton site).
1. Sparta's cost in one training step (forward, backward, SGD) of SmallCNN on 28x28 and
   ResNet-18 on 32x32 inputs: time with Sparta over time with ReLU, per regime: eager
   with the plain reference Sparta, eager with the device's default site (on CPU the
   fused autograd function), Sparta's compiled and Triton sites and the whole model under
   torch.compile (with the plain and the Triton site) where Triton is at hand.
2. The loop: PGD-10 adversarial training throughput (training images/s) of sparta's
   machinery (DeviceLoader, METHODS["pgd"] with input-only attack gradients, the
   runtime's autocast, channels_last and torch.compile as `sparta train` applies them)
   over a straightforward loop (a DataLoader over a TensorDataset in host memory, fp32,
   PGD-10 by loss.backward() each step, no compile), for SmallCNN on Fashion-MNIST and
   ResNet-18 on 32x32, with ReLU and with Sparta.

On CUDA: bf16 autocast and channels_last (for ours and for part 1), compile on where
Triton is installed. On CPU: fp32, no compile. Synthetic data stands in where a data
set is not on disk (speed does not depend on the pixels); the output says which.

    python benchmarks/speed.py               # full sizes: about 8 minutes on one H100
    python benchmarks/speed.py --quick       # small batches, few steps: a 2-core CPU
    python benchmarks/speed.py --quick --threads 1 --parts site,step,loop   # the CPU table
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparta import build_model, create_activation
from sparta.config import TrainConfig
from sparta.data import dataset_info, load_dataset
from sparta.errors import SpartaError
from sparta.runtime import autocast, machine_facts, resolve_device
from sparta.site import compiler_available, triton_runs_on
from sparta.site import native as native_site
from sparta.training import distributed
from sparta.training.loader import DeviceLoader
from sparta.training.loop import make_optimizer, set_up, train_batch, train_step
from sparta.training.methods import METHODS, AttackSetting
from sparta.training.schedule import SCHEDULES

ATTACK_STEPS = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4  # small lr: timing needs no learning, only no NaNs


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; `--quick` shrinks it for a small CPU."""

    step_batch: int = 512  # part 1, ResNet-18
    step_smallcnn_batch: int = 128  # part 1, SmallCNN
    smallcnn_batch: int = 128  # part 2, Fashion-MNIST (the `sparta train` default batch)
    resnet_batch: int = 512  # part 2, 32x32
    pool: int = 10_000  # training images each loop cycles through
    warmup: int = 3  # untimed steps first (compilation happens here)
    min_steps: int = 5  # timed steps, at least ...
    min_seconds: float = 3.0  # ... and at least this long


SIZE_FLAGS = ("step_batch", "step_smallcnn_batch", "smallcnn_batch", "resnet_batch", "pool", "warmup", "min_steps")
FULL = Sizes()
QUICK = Sizes(
    step_batch=32,
    step_smallcnn_batch=128,
    smallcnn_batch=128,
    resnet_batch=16,
    pool=1024,
    warmup=1,
    min_steps=3,
    min_seconds=5.0,
)


@dataclass(frozen=True)
class Case:
    model: str
    dataset: str
    eps: float


CASES = (Case("smallcnn", "fashion-mnist", 0.1), Case("resnet18", "cifar10", 8 / 255))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timer:
    """Times steps on one device; once `deadline` (perf_counter seconds) passes, it skips."""

    sizes: Sizes
    device: torch.device
    deadline: float = float("inf")

    def seconds_per_step(self, build: Callable[[], Callable[[], None]]) -> float:
        """Median wall time of one step of `build()` after the warm-up; NaN when skipped."""
        if time.perf_counter() > self.deadline:
            log("  skipped: the time budget (--max-minutes) is spent")
            return float("nan")
        step = build()
        for _ in range(self.sizes.warmup):
            step()
        synchronize(self.device)
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < self.sizes.min_steps or time.perf_counter() - started < self.sizes.min_seconds:
            tick = time.perf_counter()
            step()
            synchronize(self.device)
            times.append(time.perf_counter() - tick)
        del step
        torch.compiler.reset()  # fresh compile caches and recompile limits for the next model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return statistics.median(times)


def make_model(
    name: str, act: str, dataset: str, device: torch.device, channels_last: bool, fused: bool | str | None = None
) -> nn.Module:
    """The model `sparta train` builds for this data set; `fused` is Sparta's option."""
    torch.manual_seed(0)
    info = dataset_info(dataset)
    options = {"fused": fused} if act == "sparta" else {}
    model = build_model(
        name, act, info.num_classes, info.channels, image_size=info.image_size, mean=info.mean, std=info.std, **options
    ).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


# ---- part 0: one site -------------------------------------------------------------------

# (batch, channels, height, width): the map the CPU figures in results/speed/cpu.md were
# first measured on, SmallCNN's second site at batch 128, ResNet-18's first stage at batch 32.
SITE_SHAPES = ((64, 16, 28, 28), (128, 32, 24, 24), (32, 64, 32, 32))


def site_step(act: str, fused: bool | str | None, shape: tuple[int, ...], device: torch.device) -> Callable[[], None]:
    """Forward + backward of one activation on a random map, parameters trainable."""
    torch.manual_seed(0)
    module = create_activation(act, shape[1], **({"fused": fused} if act == "sparta" else {})).to(device)
    x = torch.randn(shape, device=device, requires_grad=True)
    grad = torch.randn(shape, device=device)

    def step() -> None:
        module(x).backward(grad)

    return step


@contextlib.contextmanager
def native_library(on: bool) -> Iterator[None]:
    """The native site library switched on or off (SPARTA_NATIVE), for one measurement."""
    before = os.environ.get("SPARTA_NATIVE")
    os.environ["SPARTA_NATIVE"] = "1" if on else "0"
    native_site.library.cache_clear()
    try:
        yield
    finally:
        if before is None:
            del os.environ["SPARTA_NATIVE"]
        else:
            os.environ["SPARTA_NATIVE"] = before
        native_site.library.cache_clear()


# name, activation, Sparta(fused=...), native library on
SITE_VARIANTS: tuple[tuple[str, str, bool | str | None, bool], ...] = (
    ("relu", "relu", None, True),
    ("plain", "sparta", False, True),
    ("torch_ops", "sparta", None, False),
    ("default", "sparta", None, True),
)
TRITON_VARIANT = ("triton", "sparta", "triton", True)  # on CUDA (interpreted on CPU: not a speed)
SITE_COLUMNS = {
    "plain": "plain Sparta",
    "torch_ops": "fused, torch ops",
    "default": "default Sparta",
    "triton": "Triton site",
}


def site_variants(device: torch.device) -> tuple[tuple[str, str, bool | str | None, bool], ...]:
    probe = torch.zeros(1, device=device)
    return SITE_VARIANTS + ((TRITON_VARIANT,) if device.type == "cuda" and triton_runs_on(probe) else ())


def measure_site_cost(timer: Timer) -> list[dict]:
    rows = []
    for shape in SITE_SHAPES:
        row: dict = {"shape": "x".join(map(str, shape))}
        for name, act, fused, native in site_variants(timer.device):
            log(f"site: {row['shape']}, {name}")
            with native_library(native):
                row[f"{name}_s"] = timer.seconds_per_step(functools.partial(site_step, act, fused, shape, timer.device))
        for name in SITE_COLUMNS:
            if f"{name}_s" in row:
                row[f"{name}_ratio"] = row[f"{name}_s"] / row["relu_s"]
        log(
            f"  relu {row['relu_s'] * 1e3:.2f} ms, plain x{row['plain_ratio']:.1f}, default x{row['default_ratio']:.1f}"
        )
        rows.append(row)
    return rows


# ---- part 1: Sparta's cost in one training step ----------------------------------------


@dataclass(frozen=True)
class Regime:
    name: str
    compile: bool
    fused: bool | str | None


def regimes(device: torch.device, compile_model: bool) -> list[Regime]:
    """The ways a Sparta model can run here; the first is where ReLU is measured."""
    if device.type == "cpu":
        found = [
            Regime("eager, plain Sparta (fused=False)", False, False),
            Regime("eager, fused site (the CPU default)", False, None),
        ]
    else:
        found = [Regime("eager", False, None)]
    if compiler_available(device):  # there the compiled and Triton sites can be measured
        found[0] = Regime("eager, plain Sparta", False, None)
        found.append(Regime("eager, compiled site (fused='compiled')", False, "compiled"))
        found.append(Regime("eager, Triton site (fused='triton')", False, "triton"))
    if compile_model:
        found.append(Regime("torch.compile(model)", True, None))
        if compiler_available(device):
            found.append(Regime("torch.compile(model), Triton site", True, "triton"))
    return found


STEP_MODELS = {"smallcnn": ("fashion-mnist", 1, 28), "resnet18": ("cifar10", 3, 32)}  # data set, channels, size


def training_step(
    model_name: str, act: str, regime: Regime, batch: int, device: torch.device, channels_last: bool
) -> Callable[[], None]:
    dataset, channels, size = STEP_MODELS[model_name]
    model = make_model(model_name, act, dataset, device, channels_last, regime.fused)
    forward = torch.compile(model) if regime.compile else model
    optimizer = make_optimizer(TrainConfig(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY), model)
    precision = autocast(device, "auto")
    standard = METHODS.get("standard")
    x = torch.rand(batch, channels, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 10, (batch,), device=device)
    setting = AttackSetting(eps=0.0, steps=1, step_size=0.0, checked=True)  # as the loop's own batches
    model.train()

    def step() -> None:
        train_step(forward, optimizer, standard, x, y, setting, precision)

    return step


def measure_step_cost(timer: Timer, compile_model: bool, channels_last: bool) -> list[dict]:
    rows = []
    for model_name in STEP_MODELS:
        batch = timer.sizes.step_smallcnn_batch if model_name == "smallcnn" else timer.sizes.step_batch
        relu_eager = float("nan")
        for regime in regimes(timer.device, compile_model):
            row: dict = {"model": model_name, "regime": regime.name, "batch": batch}
            build = functools.partial(
                training_step, model_name, regime=regime, batch=batch, device=timer.device, channels_last=channels_last
            )
            if regime.compile or math.isnan(relu_eager):
                log(f"step cost: {model_name}, {regime.name}, relu, batch {batch}")
                row["relu_s"] = timer.seconds_per_step(functools.partial(build, act="relu"))
                relu_eager = relu_eager if regime.compile else row["relu_s"]
            else:  # ReLU has no Sparta path to switch: the same model as in the first regime
                row["relu_s"] = relu_eager
            log(f"step cost: {model_name}, {regime.name}, sparta, batch {batch}")
            row["sparta_s"] = timer.seconds_per_step(functools.partial(build, act="sparta"))
            row["ratio"] = row["sparta_s"] / row["relu_s"]
            log(f"  relu {row['relu_s'] * 1e3:.1f} ms, sparta {row['sparta_s'] * 1e3:.1f} ms, ratio {row['ratio']:.2f}")
            rows.append(row)
    return rows


# ---- part 2: PGD-10 adversarial training loops -----------------------------------------


def training_images(case: Case, pool: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first `pool` training images, or uniform noise of the same shape if not on disk."""
    info = dataset_info(case.dataset)
    try:
        images, labels = load_dataset(case.dataset, "train")
        return images[:pool].contiguous(), labels[:pool].contiguous(), case.dataset
    except SpartaError:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(pool, info.channels, info.image_size, info.image_size, generator=generator)
        labels = torch.randint(0, info.num_classes, (pool,), generator=generator)
        return images, labels, f"synthetic {info.channels}x{info.image_size}x{info.image_size}"


def endless(batches: Callable[[int], Iterator]) -> Iterator:
    epoch = 0
    while True:
        yield from batches(epoch)
        epoch += 1


def baseline_loop(
    case: Case, act: str, images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device
) -> Callable[[], None]:
    """The loop a careful person writes first: host DataLoader, fp32, PGD by loss.backward().

    Sparta runs its plain reference path here (fused=False): no compilation anywhere.
    """
    model = make_model(case.model, act, case.dataset, device, channels_last=False, fused=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True)
    batches = endless(lambda epoch: iter(loader))
    eps, alpha = case.eps, TrainConfig(eps=case.eps, attack_steps=ATTACK_STEPS).step_size
    model.train()

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(ATTACK_STEPS):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            loss.backward()
            x_adv = x_adv.detach() + alpha * x_adv.grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_adv), y)
        loss.backward()
        optimizer.step()
        loss.item()  # a running loss for the progress line

    return step


def sparta_loop(
    case: Case,
    act: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    device: torch.device,
    compile_model: bool,
) -> Callable[[], None]:
    """One step of `sparta.training.loop.train` (its `set_up` and `train_batch`), method pgd,
    TrainConfig's defaults but a small constant learning rate.

    The PGD attack differentiates `forward`: the compiled model when compile is on.
    """
    config = TrainConfig(eps=case.eps, attack_steps=ATTACK_STEPS, lr=LR, compile=compile_model)
    model = make_model(case.model, act, case.dataset, device, channels_last=False)
    loader = DeviceLoader(images, labels, batch, seed=0, augment="none", device=device)
    fit = set_up(
        config,
        False,
        METHODS.get("pgd"),
        SCHEDULES.get("constant"),
        distributed.Ranks(),
        device,
        loader,
        (images[:1], labels[:1]),
        model,
    )
    batches = endless(loader.epoch)
    fit.model.train()

    def step() -> None:
        train_batch(fit, *next(batches))

    return step


def measure_loops(timer: Timer, compile_model: bool) -> list[dict]:
    rows = []
    device = timer.device
    for case in CASES:
        batch = timer.sizes.smallcnn_batch if case.model == "smallcnn" else timer.sizes.resnet_batch
        images, labels, source = training_images(case, max(timer.sizes.pool, 2 * batch))
        for act in ("relu", "sparta"):
            row: dict = {"model": case.model, "data": source, "act": act, "batch": batch}
            setting = (case, act, images, labels, batch, device)
            variants = [
                ("baseline", functools.partial(baseline_loop, *setting)),
                ("ours_eager", functools.partial(sparta_loop, *setting, False)),
            ]
            if compile_model:
                variants.append(("ours_compiled", functools.partial(sparta_loop, *setting, True)))
            for name, build in variants:
                log(f"loop: {case.model} {act} batch {batch}, {name}")
                row[f"{name}_ips"] = batch / timer.seconds_per_step(build)
            row["speedup"] = extreme(v for k, v in row.items() if k.startswith("ours_")) / row["baseline_ips"]
            log(f"  baseline {row['baseline_ips']:.1f} img/s, speed-up x{row['speedup']:.2f}")
            rows.append(row)
    return rows


def extreme(values, pick=max) -> float:
    """`pick` of the measured values (NaN marks a skipped one); NaN if none was measured."""
    measured = [v for v in values if not math.isnan(v)]
    return pick(measured) if measured else float("nan")


# ---- report ------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def number(value: float, digits: int = 1, suffix: str = "") -> str:
    return "skipped" if math.isnan(value) else f"{value:.{digits}f}{suffix}"


def site_section(sites: list[dict]) -> list[str]:
    names = [name for name in SITE_COLUMNS if f"{name}_s" in sites[0]]
    rows = [
        [
            r["shape"],
            number(r["relu_s"] * 1e3, 2),
            *(f"{number(r[f'{name}_s'] * 1e3, 2)} ({number(r[f'{name}_ratio'], 1, 'x')})" for name in names),
        ]
        for r in sites
    ]
    return [
        "",
        "## 0. One site: forward + backward, N x C x H x W",
        "",
        "ms, and in brackets the multiple of ReLU's time. plain: `fused=False`; fused, torch ops: the "
        "fused site without the native library (`SPARTA_NATIVE=0`, or no C compiler); default: "
        '`fused=None`, on CPU the native library where it is built; Triton site: `fused="triton"` (CUDA).',
        "",
        table(["map", "ReLU", *(SITE_COLUMNS[name] for name in names)], rows),
        "",
        f"Default site / ReLU on {sites[0]['shape']}: **{number(sites[0]['default_ratio'], 1, 'x')}** "
        "(target: at most 3x)",
    ]


def step_section(steps: list[dict]) -> list[str]:
    rows = [
        [
            r["model"],
            str(r["batch"]),
            r["regime"],
            number(r["relu_s"] * 1e3),
            number(r["sparta_s"] * 1e3),
            number(r["ratio"], 2, "x"),
            number(r["batch"] / r["relu_s"], 0),
            number(r["batch"] / r["sparta_s"], 0),
        ]
        for r in steps
    ]
    lines = [
        "",
        "## 1. Sparta's cost: one training step (SmallCNN 28x28, ResNet-18 32x32)",
        "",
        table(
            [
                "model",
                "batch",
                "regime",
                "ReLU ms/step",
                "Sparta ms/step",
                "Sparta / ReLU",
                "ReLU img/s",
                "Sparta img/s",
            ],
            rows,
        ),
        "",
    ]
    for model in dict.fromkeys(r["model"] for r in steps):
        mine = [r for r in steps if r["model"] == model]
        best = extreme((r["sparta_s"] for r in mine), min) / extreme((r["relu_s"] for r in mine), min)
        lines.append(
            f"- {model}: fastest Sparta step / fastest ReLU step **{number(best, 2, 'x')}**"
            + (" (target: at most 1.10x)" if model == "resnet18" else "")
        )
    return lines


def loop_section(loops: list[dict]) -> list[str]:
    variants = [k for k in ("ours_eager_ips", "ours_compiled_ips") if k in loops[0]]
    header = ["model", "data", "act", "batch", "baseline img/s"]
    header += ["ours img/s" if len(variants) == 1 else k.split("_")[1].join(("ours ", " img/s")) for k in variants]
    rows = [
        [r["model"], r["data"], r["act"], str(r["batch"]), number(r["baseline_ips"])]
        + [number(r[k]) for k in variants]
        + [number(r["speedup"], 2, "x")]
        for r in loops
    ]
    worst = extreme((r["speedup"] for r in loops), min)
    lines = [
        "",
        "## 2. PGD-10 adversarial training throughput (training images/s)",
        "",
        table([*header, "ours / baseline"], rows),
        "",
        f"- smallest speed-up of ours over the baseline loop: **{number(worst, 2, 'x')}** (GPU target: at least 2x)",
    ]
    for model in dict.fromkeys(r["model"] for r in loops):
        by_act = {r["act"]: extreme(r[k] for k in variants) for r in loops if r["model"] == model}
        if {"relu", "sparta"} <= set(by_act):
            ratio = by_act["sparta"] / by_act["relu"]
            lines.append(
                f"- {model}: Sparta / ReLU throughput, ours: **{number(ratio, 2, 'x')}**"
                + (" (target: at least 0.85x)" if model == "smallcnn" else "")
            )
    return lines


def report(
    args: argparse.Namespace,
    timer: Timer,
    compile_model: bool,
    channels_last: bool,
    sites: list[dict],
    steps: list[dict],
    loops: list[dict],
) -> str:
    device, sizes = timer.device, timer.sizes
    facts = machine_facts(device)
    if importlib.util.find_spec("triton") is not None:
        import triton

        facts["triton"] = triton.__version__
    if device.type == "cpu":
        fast = (
            "fused site (the CPU default), native library"
            if native_site.library() is not None
            else "fused site (the CPU default) in torch operations: no native library"
        )
    else:
        fast = (
            "plain path (compiled and Triton sites measured beside it)" if compiler_available(device) else "plain path"
        )
    out = [
        "# sparta speed",
        "",
        f"- command: `{shlex.join(['python', 'benchmarks/speed.py', *args.argv])}`",
        f"- device: {device.type}, {device_name(device)}; {torch.get_num_threads()} torch threads; "
        f"torch {facts['torch']}; triton {facts.get('triton', 'absent')}; git {str(facts['git_commit'])[:10]}",
        f"- ours: {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, channels_last "
        f"{'on' if channels_last else 'off'}, Sparta {fast}, torch.compile(model) "
        f"{'measured too' if compile_model else 'off'}; baseline: fp32, NCHW, plain Sparta, no compile",
        f"- sizes ({'quick' if args.quick else 'full'}): {sizes.warmup} warm-up steps, then the median "
        f"of at least {sizes.min_steps} timed steps and {sizes.min_seconds:g} s",
    ]
    for rows, section in ((sites, site_section), (steps, step_section), (loops, loop_section)):
        if rows:
            out += section(rows)
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--quick", action="store_true", help="small batches and few steps, for a CPU")
    parser.add_argument("--parts", default="step,loop", help="comma-separated: site, step, loop (default: step,loop)")
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="also measure torch.compile(model) (auto: on CUDA with Triton)",
    )
    for name in SIZE_FLAGS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help="override that size setting")
    parser.add_argument("--min-seconds", type=float, help="override the timed seconds per measurement")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=8.0,
        help="skip the measurements still to start after this long (default 8)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = set(args.parts.split(",")) - {"site", "step", "loop"}
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; use site, step and/or loop")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = {name: getattr(args, name) for name in (*SIZE_FLAGS, "min_seconds") if getattr(args, name) is not None}
    timer = Timer(replace(QUICK if args.quick else FULL, **overrides), device, deadline=started + 60 * args.max_minutes)
    compile_model = compiler_available(device) if args.compile == "auto" else args.compile == "on"
    channels_last = device.type == "cuda"
    parts = args.parts.split(",")
    log(f"device {device} ({device_name(device)}), {timer.sizes}, compile {compile_model}")
    sites = measure_site_cost(timer) if "site" in parts else []
    steps = measure_step_cost(timer, compile_model, channels_last) if "step" in parts else []
    loops = measure_loops(timer, compile_model) if "loop" in parts else []
    text = report(args, timer, compile_model, channels_last, sites, steps, loops)
    text += f"\nTotal time: {time.perf_counter() - started:.0f} s.\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": device_name(device),
                    "sizes": timer.sizes.__dict__,
                    "sites": sites,
                    "steps": steps,
                    "loops": loops,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
