"""The gate for tensors and settings entering the Python API (evaluate, attacks, losses).

A robustness number is only as good as what went in: images outside [0, 1] are clamped by
every attack into a different threat model, labels beyond the model's classes score 0%
without complaint, and a negative step size makes PGD an ally. So each public entry point
checks its batch once (one min/max of the images, one of the labels: cheap next to any
attack) and refuses with a one-line SpartaError naming the argument and what was found.
What the field accepts is taken as is: labels of any integer dtype (or a list), floating
images of another dtype than the model's (cast to it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sparta.errors import SpartaError


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of the model's first floating parameter (None for a model without one)."""
    if not isinstance(model, nn.Module):
        hint = " (load_pretrained and load_checkpoint return (model, record))" if isinstance(model, tuple) else ""
        raise SpartaError(f"model must be a torch.nn.Module, got {type(model).__name__}{hint}")
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype, parameter.device
    return None, None


def check_images(x: Any, model: nn.Module | None = None) -> torch.Tensor:
    """x as a floating N x C x H x W tensor in [0, 1], finite, in the model's dtype."""
    if not isinstance(x, torch.Tensor):
        raise SpartaError(f"images must be a torch.Tensor of shape N x C x H x W, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (divide 8-bit images by 255)" if x.dtype == torch.uint8 else ""
        raise SpartaError(f"images must be floating point with values in [0, 1], got dtype {x.dtype}{hint}")
    if x.dim() != 4:
        raise SpartaError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")
    if not len(x):
        raise SpartaError("images: got an empty batch (N = 0)")
    dtype, device = model_dtype_device(model) if model is not None else (None, None)
    if device is not None and x.device != device:
        raise SpartaError(f"images are on {x.device} and the model on {device}; move them to one device")
    low, high = (float(v) for v in torch.stack(torch.aminmax(x.detach())).float().tolist())
    if math.isnan(low) or math.isnan(high):
        raise SpartaError(f"images hold NaN pixels ({int(x.isnan().sum())} of {x.numel()})")
    if math.isinf(low) or math.isinf(high):
        raise SpartaError(f"images hold inf pixels ({int(x.isinf().sum())} of {x.numel()})")
    if low < 0.0 or high > 1.0:
        raise SpartaError(
            f"images must lie in [0, 1] (models normalise inside; attacks keep to the [0, 1] box), "
            f"found values in [{low:.4g}, {high:.4g}]"
        )
    return x.to(dtype) if dtype is not None and dtype != x.dtype else x


def check_labels(y: Any, n: int, device: torch.device) -> torch.Tensor:
    """y as an int64 vector of n class indices on `device` (any integer dtype or a list is taken)."""
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise SpartaError(f"labels must be a vector of class indices, got {type(y).__name__}") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise SpartaError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise SpartaError(f"labels must be a vector of N class indices, got shape {tuple(y.shape)}")
    if len(y) != n:
        raise SpartaError(f"got {n} images and {len(y)} labels; give one label per image")
    return y.to(device=device, dtype=torch.long)


def check_batch(x: Any, y: Any, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) checked and converted (`check_images`, `check_labels`)."""
    x = check_images(x, model)
    return x, check_labels(y, len(x), x.device)


def check_logits(logits: Any, y: torch.Tensor, labels_checked: bool = False) -> None:
    """The model's output for len(y) images is N x classes, and every label is one of them
    (unless `labels_checked`: the caller has checked them, and the host sync is saved)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or len(logits) != len(y) or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise SpartaError(
            f"the model must return logits of shape (N, classes) with 2 or more classes; it returned {shape} "
            f"for {len(y)} images"
        )
    if not labels_checked:
        check_classes(y, logits.shape[1])


def check_probe(logits: Any, y: torch.Tensor) -> int:
    """The model's logits for the batch's first image are 1 x classes, and every label of
    the batch is one of those classes; returns the class count."""
    check_logits(logits, y[:1])
    check_classes(y, logits.shape[1])
    return logits.shape[1]


def check_classes(y: torch.Tensor, classes: int) -> None:
    """Every label lies in 0..classes-1 (one min/max of the labels)."""
    low, high = torch.stack(torch.aminmax(y)).tolist()
    if low < 0 or high >= classes:
        raise SpartaError(
            f"labels must lie in 0..{classes - 1} (the model's {classes} classes), found {low if low < 0 else high}"
        )


def positive_int(name: str, value: Any) -> int:
    """value as an int >= 1 (a whole number), else a SpartaError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpartaError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """value as a finite float > 0, else a SpartaError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpartaError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def non_negative_number(name: str, value: Any) -> float:
    """value as a finite float >= 0, else a SpartaError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SpartaError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
