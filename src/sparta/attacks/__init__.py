"""Attacks in pixel space: each has `perturb(model, x, y) -> x_adv` inside the eps ball and [0, 1]."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from sparta.attacks.autoattack import AutoAttack
from sparta.attacks.gradient import FGSM, PGD
from sparta.attacks.threat import check_eps, input_gradient, margin_loss, model_mode, parse_eps, project
from sparta.errors import SpartaError
from sparta.registry import Registry


class Attack(Protocol):
    """`perturb(model, x, y)` (or `attack(model, x, y)`) returns x_adv in the eps ball and [0, 1]."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for (x, y): x_adv inside the eps ball around x and in [0, 1]."""
        ...

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


ATTACKS: Registry[Callable[..., Attack]] = Registry("attack")


@ATTACKS.register("fgsm")
def _fgsm(eps: float, **options) -> Attack:
    return FGSM(eps, **options)


@ATTACKS.register("pgd")
def _pgd(eps: float, steps: int = 20, restarts: int = 1, **options) -> Attack:
    return PGD(eps, steps=steps, restarts=restarts, loss="ce", **options)


@ATTACKS.register("cw")
def _cw(eps: float, steps: int = 30, restarts: int = 1, **options) -> Attack:
    return PGD(eps, steps=steps, restarts=restarts, loss="cw", **options)


@ATTACKS.register("autoattack", "aa")
def _autoattack(eps: float, **options) -> Attack:
    return AutoAttack(eps, **options)


@ATTACKS.register("square")
def _square(eps: float, **options) -> Attack:
    """AutoAttack's black-box Square attack alone: a check against gradient masking."""
    return AutoAttack(eps, version="custom", attacks=("square",), **options)


def create_attack(name: str, eps: float, **options) -> Attack:
    """An attack by name (fgsm, pgd, cw, autoattack, square) at L-inf radius eps in pixel space.

    Options are the attack's own (steps, restarts, step_size, ...); `alpha`, the usual name
    of the step size, is accepted for `step_size`.
    """
    if "alpha" in options:
        if "step_size" in options:
            raise SpartaError("give the step size once: alpha or step_size, not both")
        options["step_size"] = options.pop("alpha")
    factory = ATTACKS.get(name)
    try:
        return factory(eps, **options)
    except TypeError as err:  # an option the attack does not have: name it
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unknown is None:
            raise
        raise SpartaError(f"attack '{name}' has no option '{unknown.group(1)}'") from None


__all__ = [
    "ATTACKS",
    "FGSM",
    "PGD",
    "AutoAttack",
    "check_eps",
    "create_attack",
    "input_gradient",
    "margin_loss",
    "model_mode",
    "parse_eps",
    "project",
]
