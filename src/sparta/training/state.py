"""The resumable training state in one safetensors file, written atomically.

Holds model weights, optimizer buffers, RNG states, the epoch and step reached and, when
saved inside an epoch, that epoch's running sums; a run killed at any moment resumes from
the last save (an epoch's end, or a few minutes ago) with the same result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from sparta.checkpoint import describe_mismatch, like_parameter, portable, portable_tensors
from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE, STATE_FILE, atomic_write


def _rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def save_state(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    device: torch.device,
    partial: dict[str, float] | None = None,
) -> None:
    """Write the resumable state: weights, optimizer buffers, RNG states, `epoch` (epochs
    finished) and `step` (batches trained); inside an epoch, `partial` holds its running sums."""
    tensors = {f"model.{k}": v for k, v in portable_tensors(model.state_dict()).items()}
    opt = optimizer.state_dict()
    for index, buffers in opt["state"].items():
        for key, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = portable(value)
    tensors.update(_rng_states(device))
    meta = {"epoch": epoch, "step": step, "partial": partial, "param_groups": opt["param_groups"]}
    atomic_write(run_dir / STATE_FILE, lambda tmp: save_file(tensors, tmp, metadata={"state": json.dumps(meta)}))


def load_state(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """Restore everything save_state wrote; returns {"epoch", "step", "partial"} reached."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise SpartaError(f"cannot resume {run_dir}: no {STATE_FILE} (the run stopped before its first save)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["state"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as err:
        raise SpartaError(f"cannot resume from {path}: {type(err).__name__}: {err}") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise SpartaError(
            f"{path} does not match the model {run_dir / CONFIG_FILE} names (another run's file?): "
            f"{describe_mismatch(model.state_dict(), weights)}"
        ) from None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = like_parameter(value, params[int(index)])
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return {"epoch": meta["epoch"], "step": meta["step"], "partial": meta.get("partial")}
