"""One GPU window: the prepared check, or the next block of the science queue.

A window is a short lease of one GPU (about 15 minutes, its start included, at most 10
minutes a command) on a bare machine without network. Everything here is sized for it:

    python scripts/gpu_window.py carry               # here: copy what that machine lacks into .gpu-carry/
    python scripts/gpu_window.py check --out DIR     # there: is the GPU path sound, and how fast (<= 4.5 min)
    python scripts/gpu_window.py block NAME --out DIR  # there: one block of the queue (<= 8 min), resumable
    python scripts/gpu_window.py unpack DIR          # here: put the tars that came back under results/gpu/
    python scripts/gpu_window.py queue               # the queue, and which block is next

`.gpu-carry/` (git-ignored, about 31 MB) holds Fashion-MNIST's four files and the
pyautoattack package without its bundled example model; name it in the lease's `carry`.
DIR receives a markdown summary and tars of the run directories (each under 16 MiB).
Every command takes `--tiny`: the same steps at toy size on the CPU, which the test suite
runs, so the logic is proven before it meets a GPU. The queue: results/gpu/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpu-carry"
RESULTS = ROOT / "results" / "gpu"
TAR_LIMIT = 15 * 2**20  # bytes of one tar: what comes back is capped at 16 MiB a file
PROGRESS_FILE = "progress.json"


# --------------------------------------------------------------------------------------
# Sizes: the same steps at full size on the GPU, or at toy size on the CPU


@dataclass(frozen=True)
class Size:
    """Flags that scale a step: full on one H100, tiny on a CPU (the tests)."""

    tiny: bool

    def train(self, epochs: int = 10, steps: int = 10, stand_ins: bool = False) -> list[str]:
        """Training flags. Tiny: on the CPU, with channels_last; with `stand_ins` (the check)
        also bf16 autocast and the fused Sparta path, the CPU stand-ins of every CUDA default
        (tests/test_cuda_defaults.py). The blocks' tiny runs leave those two out: they test
        the blocks' logic, and bf16 on a CPU is slow."""
        if not self.tiny:
            return ["--epochs", str(epochs), "--attack-steps", str(steps), "--batch-size", "128"]
        flags = [
            "--subset",
            "64",
            "--epochs",
            "1",
            "--attack-steps",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--channels-last",
        ]
        if stand_ins:
            return [*flags, "--eval-n", "16", "--precision", "bf16", "--act-option", "fused=compiled"]
        return [*flags, "--eval-every", "0"]

    @property
    def acts(self) -> str:
        return "relu,sparta" if self.tiny else "relu,sparta,swish,frelu"

    def seeds(self, tiny: int = 2) -> list[str]:
        return ["--seeds", str(tiny) if self.tiny else "3"]

    @property
    def ablation(self) -> list[str]:
        factors = (
            ["kernel_size=1", "share=network"]
            if self.tiny
            else ["phi=depthwise,constant", "kernel_size=1,5", "beta0=1,16", "share=layer,network"]
        )
        return [flag for factor in factors for flag in ("--vary", factor)]

    def n(self, full: int | None) -> list[str]:
        if self.tiny:
            return ["--n", "4" if full and full <= 1000 else "8"]
        return [] if full is None else ["--n", str(full)]

    @property
    def autoattack(self) -> str:
        """AutoAttack; in tiny blocks FGSM stands in (Square's 5,000 queries take minutes on a
        CPU; the check and the test suite run the AutoAttack adapter itself)."""
        return "fgsm" if self.tiny else "autoattack"

    def seconds(self, full: float) -> float:
        return 240.0 if self.tiny else full


def environment(tiny: bool) -> dict[str, str]:
    """The child processes' environment: carried packages and data, source tree, compile backend."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(CARRY / "site")] if (CARRY / "site").is_dir() else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if (CARRY / "data").is_dir():
        env.setdefault("SPARTA_DATA", str(CARRY / "data"))
    env.setdefault("SPARTA_GIT_COMMIT", git_commit())
    if tiny:
        env["SPARTA_COMPILE_BACKEND"] = "aot_eager"
        env["OMP_NUM_THREADS"] = "1"
    return env


# --------------------------------------------------------------------------------------
# Steps: subprocesses with a deadline, run in parallel where they may


@dataclass
class Step:
    """One command of a window: it starts once the steps it `needs` succeeded and those it
    comes `after` ended (whatever their status)."""

    name: str
    argv: list[str] | Callable[[Runner], int]
    timeout: float
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    status: str = "waiting"  # waiting, running, ok, failed (exit N), cut off, skipped
    seconds: float = 0.0


@dataclass
class Runner:
    """Runs steps as child processes, each logging to LOGS/<name>.txt, all killed at the deadline."""

    logs: Path
    env: dict[str, str]
    deadline: float

    def call(self, name: str, argv: list[str], timeout: float) -> int:
        """Run argv to completion, the step's timeout or the window's deadline; its exit status."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.txt", "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            limit = min(time.monotonic() + timeout, self.deadline)
            while process.poll() is None:
                if time.monotonic() > limit:
                    os.killpg(process.pid, signal.SIGKILL)  # files are written atomically: safe to kill
                    process.wait()
                    return -9
                time.sleep(0.2)
            return process.returncode

    def run(self, steps: list[Step]) -> None:
        """Start each step once it may (see Step); wait for all (or the deadline)."""
        threads: dict[str, threading.Thread] = {}
        while True:
            for step in steps:
                if step.status != "waiting":
                    continue
                needed = [s for s in steps if s.name in step.needs]
                before = [s for s in steps if s.name in step.after]
                if any(s.status not in ("waiting", "running", "ok") for s in needed):
                    step.status = "skipped"
                elif all(s.status == "ok" for s in needed) and all(
                    s.status not in ("waiting", "running") for s in before
                ):
                    step.status = "running"
                    threads[step.name] = threading.Thread(target=self._run_step, args=(step,))
                    threads[step.name].start()
            if all(s.status not in ("waiting", "running") for s in steps):
                return
            time.sleep(0.2)

    def _run_step(self, step: Step) -> None:
        started = time.monotonic()
        if time.monotonic() > self.deadline:
            step.status = "cut off"
            return
        try:
            code = step.argv(self) if callable(step.argv) else self.call(step.name, step.argv, step.timeout)
        except Exception as err:  # a broken step is reported, and the window goes on
            with open(self.logs / f"{step.name}.txt", "a") as log:
                log.write(f"{type(err).__name__}: {err}\n")
            code = 1
        step.seconds = time.monotonic() - started
        step.status = "ok" if code == 0 else "cut off" if code == -9 else f"failed (exit {code})"


SPARTA = [sys.executable, "-m", "sparta"]


# --------------------------------------------------------------------------------------
# The check


def check_steps(size: Size, runs: Path, out: Path) -> list[Step]:
    """The GPU check: CUDA-only tests; 1-epoch training with every CUDA default, and with
    --compile; a killed run resumed; eval (clean, PGD-20, CW on 10,000, AutoAttack on 500);
    the step part of the speed benchmark."""
    data = ["--dataset", "fashion-mnist", "--model", "smallcnn", "--act", "sparta", "--method", "pgd"]
    # PGD-10 at full eps from the first step, no warm-up: the recipe in which Sparta stayed at
    # chance before phi's gradient was scaled (results/trainability.md); each 1-epoch training
    # must now leave chance.
    one_epoch = [*data, *size.train(epochs=1, stand_ins=True)]

    def resume(runner: Runner) -> int:
        run_dir = runs / "resume"
        argv = [*SPARTA, "train", *data, *size.train(epochs=2, stand_ins=True), "--epochs", "2", "--out", str(run_dir)]
        if not size.tiny:
            argv += ["--subset", "8192"]
        with open(runner.logs / "resume.txt", "a") as log:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=runner.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        limit = time.monotonic() + size.seconds(90)
        while not (run_dir / "checkpoint.safetensors").exists() and process.poll() is None:
            if time.monotonic() > limit:
                break
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # "killed" after its first checkpoint
        process.wait()
        if not (run_dir / "checkpoint.safetensors").exists():
            return 1
        code = runner.call("resume", [*SPARTA, "train", "--resume", str(run_dir)], size.seconds(90))
        epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return code or (0 if epochs == [0, 1] else 1)

    speed = [
        sys.executable,
        "benchmarks/speed.py",
        "--parts",
        "step",
        "--compile",
        "off",
        "--out",
        str(out / "speed-step.md"),
        "--json",
        str(runs / "speed-step.json"),
    ]
    speed += (
        ["--quick", "--max-minutes", "0.2", "--step-batch", "4", "--min-seconds", "0.2", "--threads", "1"]
        if size.tiny
        else ["--max-minutes", "1"]
    )
    # every site path on CUDA against the float64 CPU reference, first thing: a table in check.md
    site_errors = [sys.executable, "benchmarks/site_errors.py", "--out", str(out / "site-errors.md")]
    site_errors += ["--device", "cpu", "--paths", "plain,fused"] if size.tiny else ["--device", "cuda"]
    # on the GPU the Triton site's tests run on CUDA too (tiny: on the CPU they are the suite's)
    marks = "cuda" if size.tiny else "cuda or triton"
    return [
        Step("site-errors", site_errors, size.seconds(120)),
        Step(
            "cuda-tests",
            [sys.executable, "-m", "pytest", "-m", marks, "-v", "-p", "no:cacheprovider"],
            size.seconds(240),
        ),
        Step("train", left_chance("train", [*SPARTA, "train", *one_epoch], runs / "defaults", size, 150), 150),
        Step(
            "train-compile",
            left_chance("train-compile", [*SPARTA, "train", *one_epoch, "--compile"], runs / "compile", size, 200),
            200,
        ),
        Step("resume", resume, size.seconds(150)),
        Step(
            "eval",
            [*SPARTA, "eval", str(runs / "defaults"), "--attacks", "clean,pgd,cw", *size.n(None)],
            size.seconds(90),
            needs=("train",),
        ),
        Step(
            "eval-autoattack",
            [*SPARTA, "eval", str(runs / "defaults"), "--attacks", "autoattack", *size.n(500)],
            size.seconds(150),
            needs=("eval",),
        ),
        Step("speed", speed, size.seconds(100), after=("cuda-tests", "train", "train-compile", "resume")),
    ]


# Running training accuracy a 1-epoch check training must reach: well above chance (10%)
# for a run that learned, below the 40-60% the full-data epoch gives (results/trainability.md).
LEFT_CHANCE = 0.25


def left_chance(name: str, argv: list[str], run_dir: Path, size: Size, seconds: float) -> Callable[[Runner], int]:
    """Step `name`: `sparta train argv --out run_dir`, failed unless its last epoch's training
    accuracy reached LEFT_CHANCE (at full size: tiny runs of 64 images are not expected to learn)."""

    def train(runner: Runner) -> int:
        code = runner.call(name, [*argv, "--out", str(run_dir)], size.seconds(seconds))
        last = last_epoch(run_dir)
        if code or last is None:
            return code or 1
        accuracy = last["train_acc"]
        with open(runner.logs / f"{name}.txt", "a") as log:
            log.write(f"training accuracy {100 * accuracy:.1f}% (must reach {100 * LEFT_CHANCE:.0f}%)\n")
        return 0 if size.tiny or accuracy >= LEFT_CHANCE else 1

    return train


def machine_line(env: dict[str, str]) -> str:
    code = (
        "import torch, platform, importlib.util as u; d = torch.cuda.is_available(); "
        "name = torch.cuda.get_device_name() if d else platform.processor() or 'cpu'; "
        "t = __import__('triton').__version__ if u.find_spec('triton') else 'absent'; "
        'print(f"{name}, torch {torch.__version__}, triton {t}, '
        "CUDA {torch.version.cuda if d else 'none'}, Python {platform.python_version()}\")"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return found.stdout.strip() or found.stderr.strip()[-200:]


def git_commit() -> str:
    """The commit the window runs: what `carry` recorded (the device's own .git can be stale),
    else git's HEAD here, with "+changes" where the tree differs from it."""
    recorded = CARRY / "commit"
    if recorded.is_file():
        return recorded.read_text().strip()
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return (found.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def last_epoch(run_dir: Path) -> dict | None:
    """The metrics.jsonl record of a run's last finished epoch, or None before the first."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file() or not metrics.read_text().strip():
        return None
    return json.loads(metrics.read_text().splitlines()[-1])


def train_figures(run_dir: Path) -> str:
    """Training speed and the per-epoch test accuracy of a run's last epoch."""
    last = last_epoch(run_dir)
    if last is None:
        return ""
    text = f"epoch {last['epoch'] + 1}: {last['images_per_s']:.0f} img/s, {last['seconds']:.1f} s"
    if "test_clean" in last:
        text += f", clean {100 * last['test_clean']:.1f}%, PGD-10 {100 * last['test_pgd10']:.1f}%"
    return text


def eval_figures(run_dir: Path) -> str:
    """Every record of a run's eval.json: accuracy, n and seconds."""
    eval_file = run_dir / "eval.json"
    if not eval_file.is_file():
        return ""
    return "; ".join(
        f"{r['attack']} {100 * r['accuracy']:.2f}% (n={r['n']}, {r['seconds']:.0f} s)"
        for r in json.loads(eval_file.read_text()).get("results", [])
    )


def summary(
    title: str, command: str, env: dict[str, str], steps: list[Step], figures: dict[str, str], started: float
) -> str:
    lines = [
        f"# {title}",
        "",
        f"- machine: {machine_line(env)}",
        f"- commit: {git_commit()}",
        f"- command: `{command}`",
        f"- wall time: {time.monotonic() - started:.0f} s",
        "",
        "| step | status | seconds | figures |",
        "| --- | --- | ---: | --- |",
    ]
    for step in steps:
        lines.append(f"| {step.name} | {step.status} | {step.seconds:.0f} | {figures.get(step.name, '')} |")
    return "\n".join(lines) + "\n"


def check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    size, out = Size(args.tiny), Path(args.out)
    work = out / "work" if args.work is None else Path(args.work)
    runs, logs = work / "check-runs", work / "check-runs" / "logs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    env = environment(args.tiny)
    runner = Runner(logs, env, deadline=started + size.seconds(270))
    steps = check_steps(size, runs, out)
    runner.run(steps)
    figures = {
        "train": train_figures(runs / "defaults"),
        "train-compile": train_figures(runs / "compile"),
        "resume": train_figures(runs / "resume"),
        "eval-autoattack": eval_figures(runs / "defaults"),
    }
    text = summary("GPU check", " ".join(sys.argv[1:]), env, steps, figures, started)
    text += (
        "\nThe tests, both trainings and the resume ran at the same time (images/s above are "
        "under that load); eval followed training; the speed benchmark ran alone at the end.\n"
    )
    errors = out / "site-errors.md"
    if errors.is_file():
        text += "\n" + errors.read_text()
    speed = out / "speed-step.md"
    if speed.is_file():
        text += "\n## Speed (benchmarks/speed.py --parts step)\n\n" + speed.read_text()
    (out / "check.md").write_text(text)
    pack([runs], out / "check-runs", keep_weights=lambda run_dir: False, base=runs.parent)
    if args.work is None:
        shutil.rmtree(work)
    print(text)
    return 0 if all(step.status == "ok" for step in steps) else 1


# --------------------------------------------------------------------------------------
# Blocks of the science queue


@dataclass(frozen=True)
class Block:
    """Grid commands, each run as `shards` processes (--shard I/K) that share the GPU."""

    name: str
    what: str
    minutes: str  # measured or estimated minutes of one H100 for the whole block
    commands: Callable[[Size, Path], list[list[str]]]
    shards: int
    keep: tuple[str, ...] = ()  # run directories whose model stays once the block is complete


FMNIST_AT = ["--dataset", "fashion-mnist", "--eps", "0.1"]
# claim-a's seed-0 models stay: claim (c) starts from Sparta's, the report sweeps eps on them.
CLAIM_A_SEED0 = tuple(f"claim-a/smallcnn-{act}-pgd-seed0" for act in ("relu", "sparta", "swish", "frelu"))


def claim_a(size: Size, out: Path) -> list[list[str]]:
    # claim-a also measures the strongest activations of the robustness literature
    acts = size.acts if size.tiny else f"{size.acts},pssilu,psoftplus"
    grid = [
        "compare",
        "--acts",
        acts,
        "--models",
        "smallcnn",
        *FMNIST_AT,
        *size.train(),
        *size.seeds(),
        "--out",
        str(out / "claim-a"),
    ]
    # clean/PGD/CW on the AutoAttack images too: the ablation block judges claim-a's Sparta
    # cells by these records, and it cannot rerun them once their models have stayed behind
    return [
        [*grid, "--attacks", "clean,pgd,cw", *size.n(None)],
        [*grid, "--attacks", f"clean,pgd,cw,{size.autoattack}", *size.n(1000)],
    ]


def ablation(size: Size, out: Path) -> list[list[str]]:
    grid = [
        "ablate",
        *size.ablation,
        "--model",
        "smallcnn",
        *FMNIST_AT,
        *size.train(),
        *size.seeds(),
        "--out",
        str(out / "claim-a"),
    ]
    return [[*grid, "--attacks", f"clean,pgd,cw,{size.autoattack}", *size.n(1000)]]


def transfer(size: Size, out: Path) -> list[list[str]]:
    cross_cnn = [
        "transfer",
        "--kind",
        "cross-cnn",
        "--source-model",
        "smallcnn",
        "--source-dataset",
        "fashion-mnist",
        "--target-model",
        "resnet20",
        "--method",
        "pgd",
        "--eps",
        "0.1",
        *size.train(),
        *size.seeds(),
        "--out",
        str(out / "transfer-cnn"),
    ]
    cross_data = [
        "transfer",
        "--kind",
        "cross-dataset",
        "--source",
        str(out / "claim-a" / "smallcnn-sparta-pgd-seed0"),
        "--target-dataset",
        "digits",
        "--eps",
        "0.1",
        *size.train(epochs=30),
        *size.seeds(),
        "--out",
        str(out / "transfer-data"),
    ]
    return [
        [*cross_cnn, "--attacks", f"clean,pgd,cw,{size.autoattack}", *size.n(1000)],
        [*cross_data, "--attacks", f"clean,pgd,cw,{size.autoattack}", *size.n(None)],
    ]


def resnet18(size: Size, out: Path) -> list[list[str]]:
    grid = [
        "compare",
        "--acts",
        size.acts,
        "--models",
        "resnet18",
        *FMNIST_AT,
        *size.train(epochs=5),
        *size.seeds(tiny=1),
        "--out",
        str(out / "resnet18"),
    ]
    return [[*grid, "--attacks", "clean,pgd,cw", *size.n(None)], [*grid, "--attacks", size.autoattack, *size.n(1000)]]


BLOCKS = {
    block.name: block
    for block in (
        Block(
            "claim-a",
            "SmallCNN, full Fashion-MNIST, relu/sparta/swish/frelu/pssilu/psoftplus x 3 seeds, PGD-10 AT "
            "10 epochs; clean/PGD-20/CW on 10,000, AutoAttack on 1,000",
            "about 30 (estimate): 3-4 windows",
            claim_a,
            6,
            CLAIM_A_SEED0,
        ),
        Block(
            "ablation",
            "Sparta's settings one at a time (phi, kernel, beta0, share) x 3 seeds on SmallCNN, "
            "judged by AutoAttack on 1,000; reuses claim-a's Sparta cells",
            "about 40 (estimate): 5 windows",
            ablation,
            6,
            CLAIM_A_SEED0,
        ),
        Block(
            "transfer",
            "claim (b): SmallCNN's Sparta function (share=network) frozen in ResNet-20; claim (c): "
            "claim-a's seed-0 function frozen on digits; 3 seeds",
            "about 30 (estimate): 4 windows",
            transfer,
            6,
        ),
        Block(
            "resnet18",
            "ResNet-18, full Fashion-MNIST, relu/sparta/swish/frelu x 3 seeds, PGD-10 AT 5 epochs; "
            "a cell must finish within its window (its 45 MB model cannot travel)",
            "about 100 (estimate): 13 windows",
            resnet18,
            3,
        ),
    )
}
# Cells of these blocks write here; ablation and transfer read claim-a's cells.
BLOCK_FOLDERS = {
    "claim-a": ["claim-a"],
    "ablation": ["claim-a"],
    "transfer": ["transfer-cnn", "transfer-data"],
    "resnet18": ["resnet18"],
}


def block_progress(results: Path) -> dict:
    path = results / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_block(args: argparse.Namespace) -> int:
    """Run the block's commands, `shards` processes at a time, until done or the deadline.

    Each shard runs the block's commands in order (its cells only), so no shard waits for
    another; the grid commands skip finished cells and resume killed ones. When every
    shard finished every command, one last run of each command (cheap: it only reads)
    writes the tables, and the block is recorded as complete."""
    started = time.monotonic()
    block = BLOCKS.get(args.name)
    if block is None:
        raise SystemExit(f"gpu_window: error: unknown block '{args.name}'; choose from: {', '.join(BLOCKS)}")
    size, out = Size(args.tiny), Path(args.out)
    results = Path(args.results)
    env = environment(args.tiny)
    window = len(block_progress(results / block.name).get("windows", [])) + 1
    logs = results / block.name / "logs" / f"window{window}"  # packed with the block's results
    runner = Runner(logs, env, deadline=started + args.minutes * 60 - (0 if args.tiny else 45))  # 45 s: packing
    # Relative to the tree where the children run, so that cells' configs stay valid when the
    # results travel between this machine and the GPU machine.
    commands = block.commands(size, Path(os.path.relpath(results, ROOT)))
    shards = 2 if args.tiny else block.shards

    def shard(index: int) -> Callable[[Runner], int]:
        def run_commands(runner: Runner) -> int:
            for argv in commands:
                code = runner.call(
                    f"{block.name}-shard{index}", [*SPARTA, *argv, "--shard", f"{index}/{shards}"], timeout=24 * 3600
                )
                if code:
                    return code
            return 0

        return run_commands

    steps = [Step(f"shard {index}/{shards}", shard(index), 24 * 3600) for index in range(shards)]
    runner.run(steps)
    complete = all(step.status == "ok" for step in steps)
    if complete:
        tables = [Step(f"table {i + 1}", [*SPARTA, *argv], size.seconds(60)) for i, argv in enumerate(commands)]
        runner.deadline = max(runner.deadline, time.monotonic() + size.seconds(60))
        runner.run(tables)
        steps += tables
        complete = all(step.status == "ok" for step in tables)
    folders = [results / name for name in BLOCK_FOLDERS[block.name] if name != block.name]
    progress = block_progress(results / block.name)
    progress.setdefault("windows", []).append(
        {
            "commit": git_commit(),
            "machine": machine_line(env),
            "seconds": round(time.monotonic() - started),
            "steps": {step.name: step.status for step in steps},
        }
    )
    progress["complete"] = complete
    (results / block.name).mkdir(parents=True, exist_ok=True)
    (results / block.name / PROGRESS_FILE).write_text(json.dumps(progress, indent=2) + "\n")
    text = summary(
        f"GPU block {block.name}: {'complete' if complete else 'to be continued'}",
        " ".join(sys.argv[1:]),
        env,
        steps,
        {},
        started,
    )
    (out / f"{block.name}.md").write_text(text)
    kept = {results / name for name in block.keep}
    pack(
        [results / block.name, *folders],
        out / block.name,
        keep_weights=lambda run_dir: not complete or run_dir in kept,
        base=results,
    )
    print(text)
    return 0


# --------------------------------------------------------------------------------------
# Packing what comes back, and unpacking it here


def _run_dirs(folders: list[Path]) -> list[Path]:
    return sorted({p.parent for folder in folders if folder.is_dir() for p in folder.rglob("config.json")})


def _epochs_reached(run_dir: Path) -> tuple[int, int]:
    """(epochs the saved model reached, epochs the run asked for)."""
    from safetensors import safe_open

    wanted = json.loads((run_dir / "config.json").read_text()).get("epochs", 0)
    model = run_dir / "model.safetensors"
    if not model.is_file():
        return 0, wanted
    with safe_open(str(model), framework="pt") as handle:
        return int(json.loads(handle.metadata()["meta"]).get("epoch", 0)), wanted


def pack(folders: list[Path], stem: Path, keep_weights: Callable[[Path], bool], base: Path | None = None) -> list[Path]:
    """Tar the folders' files into STEM-1.tar, STEM-2.tar, ... (each under TAR_LIMIT).

    Weights: an unfinished run keeps its checkpoint.safetensors (to resume in the next
    window); a finished one its model.safetensors where `keep_weights(run_dir)` says so.
    A file too large to come back (a ResNet-18's) stays behind: such a run restarts."""
    base = base or stem.parent
    chosen: list[Path] = []
    runs = set(_run_dirs(folders))
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix == ".safetensors" and path.parent in runs and path.name != "sparta.safetensors":
                reached, wanted = _epochs_reached(path.parent)
                wanted_file = "model.safetensors" if reached >= wanted else "checkpoint.safetensors"
                if path.name != wanted_file or (wanted_file == "model.safetensors" and not keep_weights(path.parent)):
                    continue
                if path.stat().st_size > TAR_LIMIT:
                    continue
            chosen.append(path)
    tars, current, size = [], None, 0
    for path in chosen:
        length = path.stat().st_size
        if current is None or size + length > TAR_LIMIT:
            if current is not None:
                current.close()
            tars.append(stem.parent / f"{stem.name}-{len(tars) + 1}.tar")
            current, size = tarfile.open(tars[-1], "w"), 0
        current.add(path, arcname=str(path.relative_to(base)))
        size += length + 1024
    if current is not None:
        current.close()
    return tars


def unpack(args: argparse.Namespace) -> int:
    """Extract the tars of DIR under results/gpu/: each run directory in a tar replaces ours."""
    results = Path(args.results)
    for tar_path in sorted(Path(args.dir).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            run_dirs = {str(Path(m.name).parent) for m in members if Path(m.name).name == "config.json"}
            for run_dir in run_dirs:
                if (results / run_dir).is_dir():
                    shutil.rmtree(results / run_dir)
            tar.extractall(results, filter="data")
        print(f"unpacked {tar_path.name}: {len(members)} files, {len(run_dirs)} run directories")
    for md in sorted(Path(args.dir).glob("*.md")):
        shutil.copy(md, results / md.name)
    return 0


def queue(args: argparse.Namespace) -> int:
    results = Path(args.results)
    next_block = None
    for block in BLOCKS.values():
        progress = block_progress(results / block.name)
        state = "complete" if progress.get("complete") else f"{len(progress.get('windows', []))} windows so far"
        if not progress.get("complete") and next_block is None:
            next_block = block.name
        print(f"{block.name:<10} {state:<18} {block.minutes:<32} {block.what}")
    print(f"next: {next_block or 'nothing, the queue is done'}")
    return 0


def carry(args: argparse.Namespace) -> int:
    """Copy Fashion-MNIST's files and pyautoattack's Python files into .gpu-carry/."""
    import pyautoattack

    from sparta.data import dataset_root

    site = CARRY / "site" / "pyautoattack"
    if site.exists():
        shutil.rmtree(site)
    shutil.copytree(
        Path(pyautoattack.__file__).parent,
        site,
        ignore=shutil.ignore_patterns("examples", "__pycache__", "*.pt", "*.pth"),
    )
    data = CARRY / "data" / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for path in dataset_root("fashion-mnist").glob("*-ubyte.gz"):
        shutil.copy(path, data / path.name)
    (CARRY / "commit").unlink(missing_ok=True)
    (CARRY / "commit").write_text(git_commit() + "\n")
    total = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(
        f"{CARRY}: {total / 2**20:.1f} MiB, commit {git_commit()}; name '.gpu-carry' in the lease's carry"
        " (run this again after each commit)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="where blocks keep their run directories")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("carry", help="copy what the GPU machine lacks into .gpu-carry/")
    for name, help_text in (("check", "the GPU check (<= 4.5 minutes)"), ("block", "one block of the queue")):
        command = sub.add_parser(name, help=help_text)
        if name == "block":
            command.add_argument("name", help=f"one of: {', '.join(BLOCKS)}")
            command.add_argument("--minutes", type=float, default=8.0, help="the block's budget (default 8)")
        command.add_argument("--out", required=True, help="folder for the summary and the tars")
        command.add_argument("--tiny", action="store_true", help="toy size on the CPU (what the tests run)")
        if name == "check":
            command.add_argument("--work", help="keep the run directories here (default: a temporary folder)")
    command = sub.add_parser("unpack", help="put the tars that came back under results/gpu/")
    command.add_argument("dir")
    sub.add_parser("queue", help="the queue and which block is next")
    args = parser.parse_args(argv)
    Path(getattr(args, "out", ".")).mkdir(parents=True, exist_ok=True)
    return {"carry": carry, "check": check, "block": run_block, "unpack": unpack, "queue": queue}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
