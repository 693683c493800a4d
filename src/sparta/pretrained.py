"""Robust models that ship with sparta, loadable in one line.

    model, record = sparta.load_pretrained("smallcnn-sparta-fashion-mnist")

Each is the seed-0 model of an experiment in the repository's results/ folder (chosen by
seed, not by score), kept as the files of its run directory: model.safetensors,
config.json (how it was trained), eval.json (how it was evaluated, on which machine) and
command.txt (the command that trained it). `sparta models` lists them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from sparta.checkpoint import load_checkpoint
from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE, EVAL_FILE, MODEL_FILE, atomic_write_text, read_eval_records

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained_models"
COMMAND_FILE = "command.txt"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, EVAL_FILE)  # copied from the run; COMMAND_FILE is written


def _root(root: str | os.PathLike | None) -> Path:
    return PRETRAINED_DIR if root is None else Path(root)


def pretrained_names(root: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped models, sorted."""
    folder = _root(root)
    return sorted(p.name for p in folder.iterdir() if (p / MODEL_FILE).is_file()) if folder.is_dir() else []


def pretrained_record(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """A shipped model's record: name, training config, evaluation results, training command."""
    folder = _root(root) / name
    if not (folder / MODEL_FILE).is_file():
        known = ", ".join(pretrained_names(root)) or "none shipped yet"
        raise SpartaError(f"unknown pretrained model '{name}'; choose from: {known}")
    return {
        "name": name,
        "config": json.loads((folder / CONFIG_FILE).read_text()),
        "results": read_eval_records(folder),
        "command": (folder / COMMAND_FILE).read_text().strip(),
    }


def load_pretrained(
    name: str,
    device: str = "cpu",
    root: str | os.PathLike | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped model `name` in eval mode (inputs in [0, 1], normalised inside), and its record."""
    record = pretrained_record(name, root)
    model, _ = load_checkpoint(_root(root) / name, device=device)
    return model, record


def find_accuracy(record: dict[str, Any], attack: str, n: int | None = None) -> dict[str, Any] | None:
    """The record's result for `attack` (on n images, or the largest n when None)."""
    found = [r for r in record["results"] if r["attack"] == attack and (n is None or r["n"] == n)]
    return max(found, key=lambda r: r["n"]) if found else None


def ship(run_dir: str | os.PathLike, name: str, command: str, root: str | os.PathLike | None = None) -> Path:
    """Copy a finished run's files into the shipped models as `name` (replacing an older copy)."""
    run_dir, target = Path(run_dir), _root(root) / name
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise SpartaError(f"{run_dir} cannot be shipped: no {', '.join(missing)}")
    staging = target.with_name(f".{name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in RUN_FILES:
        shutil.copy2(run_dir / file, staging / file)
    atomic_write_text(staging / COMMAND_FILE, command.strip() + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
