"""Accuracy under attack, batch by batch, and `eval.json` for a run directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparta.attacks import ATTACKS, Attack, create_attack, model_mode
from sparta.checkpoint import load_checkpoint
from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.eval_progress import AttackProgress, ProgressFile, file_digest
from sparta.inputs import check_batch, check_probe, positive_int
from sparta.locks import progress_lock, reading_run
from sparta.progress import warn
from sparta.runfiles import (
    EVAL_FILE,
    EVAL_PROGRESS_FILE,
    MODEL_FILE,
    EvalRecord,
    check_eval_file,
    record_key,
    update_eval,
)
from sparta.stats import binomial_interval

# Evaluation settings (docs/design.md section 5): PGD-20 with step eps/4; CW = PGD-30 on the margin.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "pgd": {"steps": 20, "restarts": 1},
    "cw": {"steps": 30, "restarts": 1},
}


def check_against_model(model: nn.Module, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """`check_batch`, then one forward of one image (eval mode, no gradients) to learn the
    model's classes: its output must be 1 x classes and every label one of them."""
    x, y = check_batch(x, y, model)
    with model_mode(model, False), torch.no_grad():
        check_probe(model(x[:1]), y)
    return x, y


def correct_mask(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack | None = None,
    batch_size: int = 500,
    progress: AttackProgress | None = None,
) -> torch.Tensor:
    """Per example: classified correctly after `attack` (clean when None), in eval mode.
    With `progress`, each batch's results are saved and a rerun starts after the last one."""
    masks = progress.resume() if progress else []
    started = time.perf_counter()
    with model_mode(model, False):
        for start in range(sum(len(mask) for mask in masks), len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            if attack is not None:
                xb = attack.perturb(model, xb, yb)
            with torch.no_grad():
                masks.append((model(xb).argmax(1) == yb).cpu())
            if progress:
                progress.save(masks, time.perf_counter() - started)
    return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None, batch_size: int = 500
) -> float:
    """Fraction of (x, y) classified correctly after `attack` (clean when None), in eval mode."""
    x, y = check_against_model(model, x, y)
    return correct_mask(model, x, y, attack, batch_size).sum().item() / max(1, len(y))


def pack_mask(mask: torch.Tensor) -> str:
    """A per-example mask as hex (one bit per example, in test-set order)."""
    return np.packbits(mask.numpy().astype(np.uint8)).tobytes().hex()


def unpack_mask(text: str, n: int) -> np.ndarray:
    """The first n entries of a `pack_mask` text, as a boolean array."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def worst_case(records: Sequence[EvalRecord]) -> float | None:
    """AutoAttack's way of counting: an example is robust only if every attack failed on
    it. Over the records' first min(n) examples (each eval uses the first n test images);
    None when a record has no per-example mask (written before masks were kept)."""
    if not records or any("correct_mask" not in r for r in records):
        return None
    n = min(r["n"] for r in records)
    survived = np.logical_and.reduce([unpack_mask(r["correct_mask"], r["n"])[:n] for r in records])
    return float(survived.mean())


def _record(
    attack: str, eps: float, mask: torch.Tensor, seconds: float, settings: dict[str, Any] | None = None
) -> EvalRecord:
    n, correct = len(mask), int(mask.sum().item())
    record: EvalRecord = {
        "attack": attack,
        "eps": eps,
        "accuracy": correct / max(1, n),
        "ci95": list(binomial_interval(correct, n)),
        "correct": correct,
        "n": n,
        "seconds": seconds,
        "correct_mask": pack_mask(mask),
    }
    if settings is not None:  # clean has none
        record["settings"] = settings
    return record


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: list[str] | str,
    eps: float,
    batch_size: int = 500,
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
    progress: ProgressFile | None = None,
) -> list[EvalRecord]:
    """Accuracy of `model` on (x, y) under each attack (and "clean"), at L-inf radius eps.

    One record per attack: accuracy, its 95% Clopper-Pearson interval for the test-set
    sample (`ci95`), correct count and n, seconds, and the attack's settings. `options`
    maps an attack name to its settings (e.g. {"pgd": {"steps": 50, "restarts": 5}}).
    `progress` keeps each attack's finished batches, so a killed evaluation resumes.
    """
    x, y = check_against_model(model, x, y)
    records: list[EvalRecord] = []
    for name in attack_list(attacks, batch_size):
        torch.manual_seed(seed)
        if name == "clean":
            started = time.perf_counter()
            mask = correct_mask(model, x, y, None, batch_size)
            records.append(_record("clean", 0.0, mask, time.perf_counter() - started))
            continue
        settings = {**DEFAULT_OPTIONS.get(ATTACKS.canonical(name), {}), **(options or {}).get(name, {})}
        if ATTACKS.canonical(name) in ("autoattack", "square"):
            settings.setdefault("seed", seed)
        records.append(_attacked(model, x, y, ATTACKS.canonical(name), eps, settings, batch_size, seed, progress))
    return records


def _attacked(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    name: str,
    eps: float,
    settings: dict[str, Any],
    batch_size: int,
    seed: int,
    progress: ProgressFile | None,
) -> EvalRecord:
    """One attack's record; with `progress`, resumed from and saved to its progress file."""
    attack = create_attack(name, eps, **settings)
    measures = {"attack": name, "eps": eps, "n": len(y), "settings": settings, "batch_size": batch_size, "seed": seed}
    saved = progress.attack(measures) if progress else None
    started = time.perf_counter()
    mask = correct_mask(model, x, y, attack, batch_size, saved)
    seconds = time.perf_counter() - started + (saved.seconds_before if saved else 0.0)
    return _record(name, eps, mask, seconds, settings=settings)


def attack_list(attacks: list[str] | str, batch_size: int = 500) -> list[str]:
    """The attacks to run, checked before any runs: known names, each once, in order
    (one name, or a comma list, may be given as a string)."""
    positive_int("batch size", batch_size)
    if isinstance(attacks, str):
        attacks = [name for name in attacks.split(",") if name.strip()]
    choices = f"choose from: clean, {', '.join(ATTACKS.names())}"
    if not attacks:
        raise SpartaError(f"no attack given; {choices}")
    unknown = [a for a in attacks if a.strip().lower() != "clean" and a not in ATTACKS]
    if unknown:
        raise SpartaError(f"unknown attack {', '.join(repr(a) for a in unknown)}; {choices}")
    names = ["clean" if a.strip().lower() == "clean" else ATTACKS.canonical(a) for a in attacks]
    return list(dict.fromkeys(names))


# Settings that size an attack's search; more of each is a stronger attack.
BUDGET_SETTINGS = ("steps", "restarts", "n_queries")


def at_least_as_strong(new: EvalRecord, old: EvalRecord) -> bool:
    """Whether `new`'s attack searched at least as hard as `old`'s: every budget setting
    (steps, restarts, Square's queries) at least as large. Absent settings compare equal."""
    new_settings, old_settings = new.get("settings") or {}, old.get("settings") or {}
    return all(
        new_settings.get(key, 0) >= old_settings.get(key, 0)
        for key in BUDGET_SETTINGS
        if isinstance(old_settings.get(key, 0), (int, float))
    )


def merge_records(old: Sequence[EvalRecord], new: Sequence[EvalRecord]) -> tuple[list[EvalRecord], list[EvalRecord]]:
    """(merged, kept_out): one record per `runfiles.record_key`. A new record replaces the old
    one only if its attack is at least as strong, so a quick rerun never overwrites a
    stronger measurement; the new records left out are returned for the caller to report."""
    merged = {record_key(r): r for r in old}  # later duplicates in an old file collapse too
    kept_out: list[EvalRecord] = []
    for record in new:
        previous = merged.get(record_key(record))
        if previous is not None and not at_least_as_strong(record, previous):
            kept_out.append(record)
            continue
        merged.pop(record_key(record), None)
        merged[record_key(record)] = record
    return list(merged.values()), kept_out


def _budget(records: Sequence[EvalRecord], like: EvalRecord) -> str:
    """The budget settings of the record among `records` that measures what `like` does."""
    match = next(r for r in records if record_key(r) == record_key(like))
    settings = match.get("settings") or {}
    return ", ".join(f"{key} {settings[key]}" for key in BUDGET_SETTINGS if key in settings) or "default"


RunData = tuple[nn.Module, dict[str, Any], TrainConfig, torch.Tensor, torch.Tensor]


def load_run(
    run_dir: str | Path,
    n: int | None = None,
    device: str = "auto",
    data_root: str | None = None,
    model: nn.Module | None = None,
) -> RunData:
    """A run's (model, meta, config, x, y): its model and first n test images on `device`
    (n larger than the test set: all of it, with a note).
    `model`: an instance of the run's architecture (needed for a model of your own); without
    it, a model file of another architecture than config.json names is refused."""
    from sparta.checkpoint import check_run_model
    from sparta.data import load_dataset
    from sparta.progress import capped
    from sparta.runtime import resolve_device

    if n is not None and n < 1:
        raise SpartaError(f"--n must be >= 1, got {n}")
    config = TrainConfig.load(Path(run_dir))
    if model is None:
        check_run_model(run_dir, config)
    torch_device = resolve_device(device)
    model, meta = load_checkpoint(run_dir, device=str(torch_device), model=model)
    x, y = load_dataset(config.dataset, "test", data_root or config.data_root)
    if n is not None:
        n = capped(n, len(y), "--n", f"the {len(y)} test images of {config.dataset}")
        x, y = x[:n], y[:n]
    return model, meta, config, x.to(torch_device), y.to(torch_device)


def evaluate_run(
    run_dir: str | Path,
    attacks: list[str],
    n: int | None = None,
    eps: float | None = None,
    device: str = "auto",
    batch_size: int = 500,
    data_root: str | None = None,
    on_attack: Callable[[str, int], None] | None = None,
    on_record: Callable[[EvalRecord], None] | None = None,
    model: nn.Module | None = None,
) -> list[EvalRecord]:
    """Evaluate a run's model on the first n test images; merge the records into eval.json.

    `model`: an instance of the run's architecture to load the weights into (required for
    a run of `sparta.train(config, model=...)`; built from the checkpoint otherwise).
    `on_attack(name, n)` is called as each attack starts and `on_record(record)` as it ends
    (after every check has passed and the model and data are loaded), for progress output.
    """
    from sparta.runtime import machine_facts

    run_dir = Path(run_dir)
    attacks = attack_list(attacks, batch_size)
    TrainConfig.load(run_dir)  # a folder that is not a run is named as such, not as unwritable
    check_eval_file(run_dir)  # a damaged or unwritable eval.json stops it before it starts
    with reading_run(run_dir), progress_lock(run_dir) as keeps_progress:
        model, meta, config, x, y = load_run(run_dir, n, device, data_root, model)
        facts = machine_facts(x.device)  # before the attacks: the code that runs them
        eps = config.eps if eps is None else eps
        about = {"run": str(run_dir), "epoch": meta.get("epoch"), "machine": facts}
        records: list[EvalRecord] = []
        progress = ProgressFile(run_dir / EVAL_PROGRESS_FILE, file_digest(run_dir / MODEL_FILE))
        for attack in attacks:  # eval.json takes each record as its attack ends; progress each batch
            if on_attack:
                on_attack(attack, len(y))
            saving = progress if keeps_progress else None
            records += evaluate(model, x, y, [attack], eps, batch_size, config.seed, progress=saving)
            _write_record(run_dir, about, records[-1])
            if saving:
                saving.clear()
            if on_record:
                on_record(records[-1])
    return records


def _write_record(run_dir: Path, about: dict[str, Any], record: EvalRecord) -> None:
    """Merge `record` into eval.json as it is now on disk (other evaluations of the run may
    have added theirs meanwhile), with `about` (run, epoch, machine); other keys stay."""
    kept_out: list[EvalRecord] = []

    def merge(document: dict[str, Any]) -> dict[str, Any]:
        merged, left = merge_records(document.get("results", []), [record])
        kept_out.extend(left)
        return {**document, **about, "results": merged}

    written = update_eval(run_dir, merge)
    _warn_kept_out(run_dir / EVAL_FILE, written["results"], kept_out)


def _warn_kept_out(path: Path, merged: list[EvalRecord], kept_out: list[EvalRecord]) -> None:
    """Say which new records eval.json did not take, and why (a stronger attack is kept)."""
    for weaker in kept_out:
        warn(
            f"{path} keeps its earlier {weaker['attack']} record at eps {weaker['eps']:g} on "
            f"{weaker['n']} images: it came from a stronger attack ({_budget(merged, weaker)}) than "
            f"this run's ({_budget([weaker], weaker)})"
        )
