"""The run directory across a run's life: created with its config.json, cut back to the
epochs its saves hold when a killed run resumes, and checked for what `--resume` can
continue from before any data is read.
"""

from __future__ import annotations

import json
from pathlib import Path

from sparta.checkpoint import check_run_model, read_checkpoint_header
from sparta.config import TrainConfig
from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, atomic_write_text, read_metrics


def prepare_run_dir(config: TrainConfig, resume: bool) -> Path:
    """The run directory, created with config.json; on resume, checked to hold the same settings."""
    run_dir = Path(config.out)
    if resume:
        saved = TrainConfig.load(run_dir)
        if saved != config:
            raise SpartaError(
                f"{run_dir}/{CONFIG_FILE} differs from the given settings; "
                "resume with `sparta train --resume RUN_DIR` alone"
            )
        return run_dir
    if (run_dir / CONFIG_FILE).exists() and (run_dir / STATE_FILE).exists():
        raise SpartaError(
            f"{run_dir} already holds a run; resume it (`sparta train --resume {run_dir}`, "
            "or sparta.train(config, resume=True)) or write to another folder"
        )
    # (a config.json alone is a run that stopped before its first save: it is replaced)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, config.to_json())
    return run_dir


def keep_metrics_before(run_dir: Path, epoch: int) -> None:
    """Drop lines a killed run wrote for epochs it did not checkpoint."""
    kept = [record for record in read_metrics(run_dir) if record["epoch"] < epoch]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in kept))


def resume_point(config: TrainConfig) -> str:
    """What `--resume` of the run `config.out` continues from, checked before any data is
    read: "state" (checkpoint.safetensors: the last save), "finished" (a model.safetensors
    of the last epoch whose training state is gone: nothing to train) or "start" (only
    config.json: the run stopped before its first save and starts from epoch 1).
    A model file of another architecture, an unfinished model without its training state,
    and a run whose epochs are recorded but whose model and state are both gone are refused."""
    run_dir = Path(config.out)
    check_run_model(run_dir, config)
    if (run_dir / STATE_FILE).is_file():
        return "state"
    again = f"train it again with `sparta train --config {run_dir} --out NEW_DIR`"
    if (run_dir / MODEL_FILE).is_file():
        epoch = int(read_checkpoint_header(run_dir)["meta"].get("epoch", 0))
        if epoch >= config.epochs:
            return "finished"
        raise SpartaError(
            f"cannot resume {run_dir}: {STATE_FILE} (optimizer and RNG state) is missing and "
            f"{MODEL_FILE} holds epoch {epoch} of {config.epochs}; `sparta eval` the model as it is, or {again}"
        )
    finished = read_metrics(run_dir)
    if finished:
        raise SpartaError(
            f"cannot resume {run_dir}: {METRICS_FILE} records {len(finished)} finished epoch(s), but neither "
            f"{MODEL_FILE} nor {STATE_FILE} is there (deleted, or not copied with the run); {again}"
        )
    return "start"
