"""The one training loop: the only place that calls zero_grad, backward and step.

Per epoch it appends a line to metrics.jsonl, then writes checkpoint.safetensors (the
resumable state) and model.safetensors (the model alone) atomically. Inside an epoch it
saves the resumable state every STATE_SAVE_SECONDS too, so a killed run loses minutes, not
an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from sparta.attacks import PGD, model_mode
from sparta.checkpoint import non_finite_tensors, save_checkpoint
from sparta.config import CUSTOM_MODEL, TrainConfig
from sparta.data import dataset_info, load_dataset
from sparta.errors import SpartaError
from sparta.evaluation import accuracy
from sparta.locks import run_lock
from sparta.progress import capped, progress, say
from sparta.runfiles import METRICS_FILE, MODEL_FILE, SPARTA_FILE, STATE_FILE, atomic_write
from sparta.runtime import autocast, compile_backend, machine_facts, resolve_device, seed_everything
from sparta.sharing import export_sparta, sparta_sites
from sparta.sparta_activation import site_paths
from sparta.training import distributed
from sparta.training.build import check_own_model, check_schedule, make_loader, model_for
from sparta.training.chance import warn_if_at_chance
from sparta.training.loader import DeviceLoader
from sparta.training.methods import METHODS, AttackSetting, Method
from sparta.training.rundir import keep_metrics_before, prepare_run_dir, resume_point
from sparta.training.schedule import SCHEDULES, eps_at
from sparta.training.state import load_state, save_state


class Diverged(ArithmeticError):
    """The loss is NaN or infinite; the step was not taken."""


def train_step(
    forward: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: Method,
    x: torch.Tensor,
    y: torch.Tensor,
    setting: AttackSetting,
    precision,
) -> tuple[float, int]:
    """One optimisation step: the loss (checked finite before any update) and correct count."""
    with precision:
        loss, logits = method(forward, x, y, setting)
    correct = (logits.detach().argmax(1) == y).sum()
    value, right = torch.stack((loss.detach().float(), correct.float())).tolist()  # the step's one host sync
    if not math.isfinite(value):
        raise Diverged(value)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value, int(right)


def train(config: TrainConfig, resume: bool = False, model: nn.Module | None = None) -> Path:
    """Adversarially train per `config`, writing the run directory `config.out`; returns it.

    `model`: a model of your own instead of `config.model`/`config.act` (config.json then
    records "custom" for both). It takes images in [0, 1] of the dataset's shape, returns
    logits, and is trained in place; with `resume=True` pass the same architecture again.
    Under torchrun, every rank runs this; only rank 0 writes files.
    """
    if model is not None:
        if not isinstance(model, nn.Module):
            raise SpartaError(f"train's model must be a torch.nn.Module, got {type(model).__name__}")
        config = dataclasses.replace(config, model=CUSTOM_MODEL, act=CUSTOM_MODEL, act_options={})
    config.validate()
    method = METHODS.get(config.method)
    schedule = SCHEDULES.get(config.schedule)
    ranks, device = distributed.start(resolve_device(config.device))
    try:
        return _train(config, resume, method, schedule, ranks, device, model)
    finally:
        distributed.stop(ranks)


def _train(config, resume, method, schedule, ranks, device, own_model=None) -> Path:
    run_dir = Path(config.out)
    # Everything that can refuse the settings runs before the run directory is touched.
    if resume and resume_point(config) == "finished":
        say(f"{run_dir} finished its {config.epochs} epoch(s) (its {STATE_FILE} is gone): nothing to resume")
        return run_dir
    loader = make_loader(config, device)
    test_x, test_y = load_dataset(config.dataset, "test", config.data_root)
    if config.eval_every and config.eval_n != TrainConfig.eval_n and ranks.is_main:  # the default means "at most"
        capped(config.eval_n, len(test_y), "--eval-n", f"the {len(test_y)} test images of {config.dataset}")
    test_x, test_y = test_x[: config.eval_n], test_y[: config.eval_n]
    test_x, test_y = (
        test_x[ranks.rank :: ranks.world_size].to(device),
        test_y[ranks.rank :: ranks.world_size].to(device),
    )
    check_schedule(config, schedule, len(loader))
    seed_everything(config.seed + ranks.rank)  # ranks draw different attack starts
    model = model_for(config, own_model).to(device)
    if own_model is not None:
        check_own_model(model, test_x[:2], dataset_info(config.dataset).num_classes)
    with run_lock(run_dir) if ranks.is_main else contextlib.nullcontext():
        if ranks.is_main:
            prepare_run_dir(config, resume)
        distributed.barrier(ranks)
        return _fit(set_up(config, resume, method, schedule, ranks, device, loader, (test_x, test_y), model))


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """channels_last as configured; by default on CUDA only, where it was measured faster."""
    return config.channels_last if config.channels_last is not None else device.type == "cuda"


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD over the trainable parameters (a frozen Sparta function has none), Nesterov with momentum."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        trainable,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )


def attack_setting(config: TrainConfig, epochs_done: float, attack_model: nn.Module | None = None) -> AttackSetting:
    """The training attack after `epochs_done` epochs: eps on its warm-up ramp, and the step
    size scaled with it (the same number of steps crosses the same share of the ball). For
    the loop's own batches, checked once when the data set loaded (`checked`)."""
    eps = eps_at(config, epochs_done)
    step_size = config.step_size * (eps / config.eps if config.eps > 0 else 1.0)
    return AttackSetting(
        eps=eps,
        steps=config.attack_steps,
        step_size=step_size,
        bn_training=config.attack_bn_training,
        trades_beta=config.trades_beta,
        attack_model=attack_model,
        checked=True,
    )


@dataclasses.dataclass
class Fit:
    """What every epoch of one run shares; built by `set_up`, advanced by `run_epoch`."""

    config: TrainConfig
    method: Method
    schedule: Callable[[float], float]
    ranks: distributed.Ranks
    device: torch.device
    run_dir: Path
    loader: DeviceLoader
    test: tuple[torch.Tensor, torch.Tensor]
    model: nn.Module
    forward: nn.Module  # the model as trained: wrapped for DDP, compiled if asked
    optimizer: torch.optim.Optimizer
    precision: contextlib.AbstractContextManager
    start_epoch: int = 0
    step: int = 0
    eps: float = 0.0  # the last batch's training eps
    facts: dict = dataclasses.field(default_factory=dict)  # machine facts for each checkpoint
    partial: dict | None = None  # the running sums of an epoch resumed from a save inside it
    saved_at: float = dataclasses.field(default_factory=time.perf_counter)  # the last state save

    @property
    def channels_last(self) -> bool:
        """Whether batches go in as channels_last (`uses_channels_last`)."""
        return uses_channels_last(self.config, self.device)

    @property
    def attack_model(self) -> nn.Module | None:
        """Attacks go through `forward` (compiled too), except under DDP: its reducer expects weight grads."""
        return self.model if self.ranks.distributed else None


def set_up(
    config: TrainConfig,
    resume: bool,
    method: Method,
    schedule: Callable[[float], float],
    ranks: distributed.Ranks,
    device: torch.device,
    loader: DeviceLoader,
    test: tuple[torch.Tensor, torch.Tensor],
    model: nn.Module,
) -> Fit:
    """Sync-BN, memory format, optimizer, the resumed state, DDP and compile: a run ready for
    its epochs. It writes nothing (the benchmark builds its training loop with it)."""
    run_dir = Path(config.out)
    model = _laid_out(config, ranks, device, model)
    optimizer = make_optimizer(config, model)
    reached: dict = {"epoch": 0, "step": 0, "partial": None}
    if resume and (run_dir / STATE_FILE).exists():  # else nothing was saved: start again
        reached = load_state(run_dir, model, optimizer, device)
    forward = distributed.wrap(model, ranks, device)
    if config.compile:  # torch.compile of a Module returns a Module (OptimizedModule); its stub says Callable
        forward = cast(nn.Module, torch.compile(forward, backend=compile_backend()))
    precision, facts = autocast(device, config.precision), {**machine_facts(device), "world_size": ranks.world_size}
    with precision:
        sites = site_paths(model, device)
    if sites:
        facts["sparta_site"] = f"{sites}, compiled model" if config.compile else sites
    given = (config, method, schedule, ranks, device, run_dir, loader, test)
    start = (reached["epoch"], reached["step"])
    return Fit(*given, model, forward, optimizer, precision, *start, facts=facts, partial=reached["partial"])


def _laid_out(config: TrainConfig, ranks: distributed.Ranks, device: torch.device, model: nn.Module) -> nn.Module:
    """The model with synchronised BatchNorm under DDP when asked, in channels_last where used."""
    if config.sync_bn and ranks.distributed:
        if device.type != "cuda":
            raise SpartaError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm has no CPU implementation")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if uses_channels_last(config, device):
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stub
    return model


def train_batch(fit: Fit, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """One step of the run: the scheduled learning rate, the attack of this point, one update."""
    config, steps_per_epoch = fit.config, len(fit.loader)
    if fit.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for group in fit.optimizer.param_groups:
        group["lr"] = config.lr * fit.schedule((fit.step + 1) / (config.epochs * steps_per_epoch))
    setting = attack_setting(config, fit.step / steps_per_epoch, fit.attack_model)
    fit.eps = setting.eps
    result = train_step(fit.forward, fit.optimizer, fit.method, x, y, setting, fit.precision)
    fit.step += 1
    return result


# Seconds between saves of the resumable state inside an epoch: what a killed run can lose.
# Single-process runs only; under torchrun the ranks save at epoch ends (a save inside an
# epoch would need every rank's running sums at one agreed step).
STATE_SAVE_SECONDS = 300.0


def run_epoch(fit: Fit, epoch: int) -> dict:
    """One epoch of training (the rest of it, after a save inside it); returns its metrics
    record (summed over ranks)."""
    fit.model.train()
    sums, fit.partial = fit.partial or dict.fromkeys(("loss_sum", "correct", "seen", "seconds"), 0.0), None
    done = fit.step - epoch * len(fit.loader)  # batches trained before a save inside this epoch
    started = time.perf_counter() - sums["seconds"]
    batches = itertools.islice(fit.loader.epoch(epoch), done, None)  # the same batches, the same order
    bar = progress(batches, total=len(fit.loader) - done, desc=f"epoch {epoch + 1}/{fit.config.epochs}")
    for index, (x, y) in enumerate(bar, start=done + 1):
        x, y = distributed.shard(x, y, fit.ranks)
        try:
            loss, right = train_batch(fit, x, y)
        except Diverged as err:
            raise SpartaError(
                f"training diverged: loss is {err} at epoch {epoch + 1}, step {fit.step}; {_kept(fit.run_dir, epoch)}"
            ) from None
        sums = _add_batch(sums, loss, right, len(y))
        bar.set_postfix(
            loss=f"{sums['loss_sum'] / sums['seen']:.4f}",
            acc=f"{100 * sums['correct'] / sums['seen']:.1f}%",
            refresh=False,
        )
        if index < len(fit.loader):
            save_inside_epoch(fit, epoch, {**sums, "seconds": time.perf_counter() - started})
    problem = _unsound(fit.model, x, y, fit.precision)
    if problem:
        raise SpartaError(f"training diverged in epoch {epoch + 1}: {problem}; {_kept(fit.run_dir, epoch)}")
    return _epoch_record(fit, epoch, sums, time.perf_counter() - started)


def _epoch_record(fit: Fit, epoch: int, sums: dict[str, float], seconds: float) -> dict:
    """The metrics.jsonl record of a finished epoch, its sums added over ranks."""
    loss_sum, correct, seen = distributed.sum_across(
        [sums[k] for k in ("loss_sum", "correct", "seen")], fit.ranks, fit.device
    )
    return {
        "epoch": epoch,
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "lr": fit.optimizer.param_groups[0]["lr"],
        "eps": fit.eps,
        "seconds": seconds,
        "images_per_s": seen / seconds,
    }


def _add_batch(sums: dict[str, float], loss: float, right: int, n: int) -> dict[str, float]:
    """An epoch's running sums after one more batch of n images."""
    return {
        **sums,
        "loss_sum": sums["loss_sum"] + loss * n,
        "correct": sums["correct"] + right,
        "seen": sums["seen"] + n,
    }


def save_inside_epoch(fit: Fit, epoch: int, partial: dict[str, float]) -> None:
    """Save the resumable state with the epoch's running sums when STATE_SAVE_SECONDS have
    passed since the last save (single process, sound weights only)."""
    if fit.ranks.distributed or time.perf_counter() - fit.saved_at < STATE_SAVE_SECONDS:
        return
    if not non_finite_tensors(dict(fit.model.state_dict())):
        save_state(fit.run_dir, fit.model, fit.optimizer, epoch, fit.step, fit.device, partial)
    fit.saved_at = time.perf_counter()


def end_epoch(fit: Fit, epoch: int, record: dict) -> None:
    """The quick test evaluation when due, then (main rank) the metrics line and the run's files."""
    config = fit.config
    if config.eval_every and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
        record.update(_quick_eval(fit.model, *fit.test, config, fit.precision, fit.ranks, fit.device))
    if fit.ranks.is_main:
        say(epoch_line(record, config.epochs))
        with (fit.run_dir / METRICS_FILE).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        save_checkpoint(fit.model, fit.run_dir, epoch=epoch + 1, config=json.loads(config.to_json()), **fit.facts)
        save_state(fit.run_dir, fit.model, fit.optimizer, epoch + 1, fit.step, fit.device)
        fit.saved_at = time.perf_counter()
        _save_function(fit)
    distributed.barrier(fit.ranks)


def _save_function(fit: Fit) -> None:
    """The Sparta function of a model with Sparta sites, for --sparta-from RUN_DIR."""
    if sparta_sites(fit.model):
        atomic_write(fit.run_dir / SPARTA_FILE, lambda tmp: export_sparta(fit.model, tmp))


def _restore_model_file(fit: Fit) -> None:
    """A run resumed from a state that had finished every epoch trains nothing, so no epoch
    end writes model.safetensors: when that file was lost, write it (and the Sparta
    function) from the state just loaded."""
    if not fit.ranks.is_main or (fit.run_dir / MODEL_FILE).is_file():
        return
    config = json.loads(fit.config.to_json())
    save_checkpoint(fit.model, fit.run_dir, epoch=fit.start_epoch, config=config, **fit.facts)
    _save_function(fit)
    say(f"re-wrote {fit.run_dir / MODEL_FILE} from {STATE_FILE} (epoch {fit.start_epoch})")


def _fit(fit: Fit) -> Path:
    """The epochs still to run, then the at-chance warning for a run that just finished."""
    if fit.ranks.is_main:
        keep_metrics_before(fit.run_dir, fit.start_epoch)
    record: dict = {}
    for epoch in range(fit.start_epoch, fit.config.epochs):
        record = run_epoch(fit, epoch)
        end_epoch(fit, epoch, record)
    _restore_model_file(fit)
    if fit.ranks.is_main and record:
        warn_if_at_chance(fit.run_dir, record["train_acc"], dataset_info(fit.config.dataset).num_classes)
    return fit.run_dir


def epoch_line(record: dict, epochs: int) -> str:
    """The one-line summary of a finished epoch (its metrics.jsonl record)."""
    line = (
        f"epoch {record['epoch'] + 1}/{epochs}: train loss {record['train_loss']:.4f}, accuracy "
        f"{100 * record['train_acc']:.1f}%, eps {record['eps']:.4f}, {record['seconds']:.0f} s "
        f"({record['images_per_s']:.0f} img/s)"
    )
    if "test_clean" in record:
        line += f"; test clean {100 * record['test_clean']:.1f}%, PGD-10 {100 * record['test_pgd10']:.1f}%"
    return line


def _unsound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision) -> str | None:
    """Why the weights after an epoch must not be saved, or None: a non-finite parameter or
    buffer, or a non-finite clean loss on the epoch's last batch (finite weights so large
    that the logits overflow)."""
    broken = non_finite_tensors(dict(model.state_dict()))
    if broken:
        return f"{len(broken)} tensor(s) of the model hold NaN or infinity (first: {broken[0]})"
    with model_mode(model, False), torch.no_grad(), precision:
        loss = F.cross_entropy(model(x).float(), y).item()
    return None if math.isfinite(loss) else f"the clean loss of the last batch is {loss}"


def _kept(run_dir: Path, epoch: int) -> str:
    """What a diverged run leaves: the checkpoint of the last finished epoch, if any."""
    if epoch == 0:
        return f"nothing was saved in {run_dir} (no epoch finished)"
    return f"{run_dir} keeps the checkpoint of epoch {epoch}, the last sound one"


def _quick_eval(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    precision,
    ranks: distributed.Ranks,
    device: torch.device,
) -> dict[str, float]:
    """Clean and PGD-10 accuracy on the first eval_n test images (each rank its share)."""
    with precision:
        clean = accuracy(model, x, y) * len(y)
        robust = accuracy(model, x, y, PGD(config.eps, steps=10)) * len(y) if config.eps > 0 else clean
    clean, robust, total = distributed.sum_across([clean, robust, len(y)], ranks, device)
    return {"test_clean": clean / total, "test_pgd10": robust / total}
