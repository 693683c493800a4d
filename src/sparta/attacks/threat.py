"""The L-infinity threat model in pixel space: eps ball around x, intersected with [0, 1]."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from sparta.errors import SpartaError
from sparta.inputs import check_logits


def parse_eps(value: str | float) -> float:
    """Read eps as a number or a fraction ("0.1", "8/255"); must lie in [0, 1]."""
    try:
        eps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise SpartaError(f"eps must be a number like 0.1 or 8/255, got '{value}'") from None
    return check_eps(eps)


def check_eps(eps: float) -> float:
    """eps as a float if it is one number in [0, 1] (pixel space), else a SpartaError naming it."""
    try:  # one number (a 0-d tensor too); a list is a sweep, one call per eps
        if isinstance(eps, (str, bool)):
            raise TypeError
        eps = float(eps)
    except (TypeError, ValueError, RuntimeError):
        raise SpartaError(f"eps must be one number in [0, 1] (pixel space), got {type(eps).__name__} {eps!r}") from None
    if not 0.0 <= eps <= 1.0:
        raise SpartaError(f"eps must lie in [0, 1] (pixel space), got {eps}")
    return eps


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the eps ball around x that is also inside the [0, 1] box."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    """A uniform random point of the eps ball around x, clipped to [0, 1]: PGD's start."""
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0.0, 1.0)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin, per example: best other logit minus the true one."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy in float32: the attacks' default loss."""
    return F.cross_entropy(logits.float(), y, reduction="none")


LOSSES = {"ce": cross_entropy, "cw": margin_loss}


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put the model in train or eval mode, and restore every submodule's mode after."""
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


def input_gradient(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str, check: bool = False
) -> torch.Tensor:
    """d loss / d input only: no weight gradients are computed during attack steps.
    `check` (an attack's first step): the logits are N x classes and y names classes."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    if check:
        check_logits(logits, y)
    value = LOSSES[loss](logits, y).sum()
    return torch.autograd.grad(value, x_adv)[0]
