"""Checkpoints as safetensors (no pickle), written atomically, rebuildable from the file alone."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sparta.errors import SpartaError
from sparta.runfiles import CONFIG_FILE, MODEL_FILE, atomic_write

if TYPE_CHECKING:
    from sparta.config import TrainConfig


def portable(tensor: torch.Tensor) -> torch.Tensor:
    """A detached, dense, row-major CPU copy of `tensor`.

    Every file this project writes goes through here: safetensors stores only dense
    row-major tensors (a channels_last weight is refused), and a file must load into a
    model of either memory format on either device.
    """
    return torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor.detach())


def portable_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`portable` applied to each value; aliases of one tensor become separate copies."""
    return {name: portable(tensor) for name, tensor in tensors.items()}


def like_parameter(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`value` on the device, dtype and memory format of `param` (a loaded optimizer buffer)."""
    return torch.empty_like(param).copy_(value) if value.shape == param.shape else value.to(param.device)


def _model_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Save weights plus `meta` (JSON) to a safetensors file, atomically.

    `path` is a file, or a run directory (then `model.safetensors` inside it). A model made
    by `sparta.build_model` also records its build spec, so `load_checkpoint(path)` rebuilds
    it from the file alone; a model of your own records its class name, and loads back with
    `load_checkpoint(path, model=YourModel(...))`.
    """
    spec = getattr(model, "build_spec", None)
    target = Path(path) / MODEL_FILE if Path(path).is_dir() else Path(path)
    header = {"build_spec": json.dumps(spec), "model_class": model_class(model), "meta": json.dumps(meta)}
    tensors = portable_tensors(model.state_dict())
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=header))
    return target


def model_class(model: nn.Module) -> str:
    """`module.QualifiedName` of the model's class (unwrapping torch.compile and DDP)."""
    inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None) or model
    return f"{type(inner).__module__}.{type(inner).__qualname__}"


def read_checkpoint_header(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's build spec, meta and model class, read without loading its tensors."""
    file = _model_file(path)
    if not file.is_file():
        raise SpartaError(f"no checkpoint at {file}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
        return {
            "build_spec": json.loads(header["build_spec"]),
            "meta": json.loads(header.get("meta", "{}")),
            "model_class": header.get("model_class"),
        }
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as err:
        raise SpartaError(f"{file} is not a sparta checkpoint ({type(err).__name__}: {err})") from None


# Build-spec keys that name the architecture (the rest of a spec but mean, std and share are
# activation options). mean and std are the data set's statistics, not the architecture.
ARCHITECTURE_KEYS = ("name", "activation", "num_classes", "in_channels", "image_size")
_NOT_OPTIONS = (*ARCHITECTURE_KEYS, "mean", "std", "share")


def spec_differences(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The build-spec keys where a checkpoint's spec differs from the one expected: the
    architecture, the activation options, and the share mode of a Sparta model. A key an
    older file does not record is not compared."""
    keys = [key for key in ARCHITECTURE_KEYS if key in saved]
    keys += sorted({*saved, *expected} - set(_NOT_OPTIONS))
    if saved.get("activation") == "sparta" and "share" in saved:
        keys.append("share")
    return [key for key in keys if saved.get(key) != expected.get(key)]


def _describe(spec: Mapping[str, Any], keys: list[str]) -> str:
    extra = ", ".join(f"{key}={spec.get(key, 'default')}" for key in keys if key not in ("name", "activation"))
    return f"a {spec.get('name')} with {spec.get('activation')}" + (f" ({extra})" if extra else "")


def check_run_model(run_dir: str | os.PathLike, config: TrainConfig) -> None:
    """Refuse a run's model.safetensors whose build spec is not the architecture its
    config.json names (a model file copied from another run): the model would be rebuilt
    from the file and evaluated, reported or trained on under the other run's name.
    Nothing to check without a model file, or for a model of your own."""
    from sparta.config import CUSTOM_MODEL
    from sparta.models import build_spec_for

    file = Path(run_dir) / MODEL_FILE
    if config.model == CUSTOM_MODEL or not file.is_file():
        return
    named = build_spec_for(config.model, config.act, config.dataset, config.share, **config.act_options)
    header = read_checkpoint_header(file)
    saved = header["build_spec"]
    if saved is None:
        raise SpartaError(
            f"{file} holds a model of your own ({header['model_class']}), but "
            f"{Path(run_dir) / CONFIG_FILE} names {_describe(named, [])}: the model file is another run's"
        )
    differ = spec_differences(saved, named)
    if differ:
        raise SpartaError(
            f"{file} holds {_describe(saved, differ)}, but {Path(run_dir) / CONFIG_FILE} names "
            f"{_describe(named, differ)}: the model file is another run's (copied?); put the run's own "
            "model back, or train it again"
        )


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or an infinity."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def load_checkpoint(
    path: str | os.PathLike, device: str = "cpu", model: nn.Module | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint file or run directory, in eval mode; returns (model, meta).

    Without `model` it is rebuilt from the file's build spec (models of `sparta.build_model`);
    with `model` (needed for a model of your own) the weights are loaded into it, strictly.
    """
    from sparta.models import build_model

    header = read_checkpoint_header(path)
    if model is None:
        if header["build_spec"] is None:
            raise SpartaError(
                f"{_model_file(path)} holds a model of your own ({header['model_class']}), which "
                "sparta cannot rebuild: build it, then load_checkpoint(path, model=your_model)"
            )
        spec = dict(header["build_spec"])
        model = build_model(spec.pop("name"), **spec)
    load_weights(model, _model_file(path), device)
    return model.to(device).eval(), header["meta"]


def load_weights(model: nn.Module, file: str | os.PathLike, device: str = "cpu") -> None:
    """Load a checkpoint's weights into `model` (of either memory format), strictly.

    Files written by earlier versions hold a module shared by several sites (a Sparta phi
    shared by stage) once, under one of its names; every other name of the same tensor is
    filled from it here.
    (safetensors' own loader misses shared BatchNorm counters: BatchNorm quietly
    restores a missing `num_batches_tracked`, and the loader then calls it unexpected.)
    """
    try:
        saved = load_file(os.fspath(file), device=device)
    except (OSError, SafetensorError) as err:
        raise SpartaError(f"{file} is not a readable safetensors file ({err})") from None
    broken = non_finite_tensors(saved)
    if broken:
        raise SpartaError(
            f"{file} holds NaN or infinite values in {len(broken)} tensor(s) (first: {broken[0]}): "
            "a diverged model, not one to evaluate or train on"
        )
    names_by_storage: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():
        if tensor.numel():
            key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape)
            names_by_storage.setdefault(key, []).append(name)
    for names in names_by_storage.values():
        present = [name for name in names if name in saved]
        for name in names:
            if present and name not in saved:
                saved[name] = saved[present[0]]
    try:
        model.load_state_dict(saved, strict=True)
    except RuntimeError:
        raise SpartaError(
            f"checkpoint {file} does not match its model: {describe_mismatch(model.state_dict(), saved)}"
        ) from None


def describe_mismatch(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> str:
    """How a saved state differs from a model's, in one short line: counts and the first
    names, not torch's list of every key (hundreds for a ResNet)."""

    def some(names: list[str]) -> str:
        more = f"; and {len(names) - 3} more" if len(names) > 3 else ""
        return "; ".join(names[:3]) + more

    def size(tensor: torch.Tensor) -> str:
        return "x".join(map(str, tensor.shape)) or "a scalar"

    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in expected]
    reshaped = [
        f"{name} {size(saved[name])} in the file, {size(expected[name])} in the model"
        for name in expected
        if name in saved and saved[name].shape != expected[name].shape
    ]
    parts = [
        f"{len(names)} {what} ({some(names)})"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
        if names
    ]
    return ", ".join(parts) or "the tensors could not be loaded"
