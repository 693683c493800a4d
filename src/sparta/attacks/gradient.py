"""FGSM and PGD (Madry et al. 2018) with restarts, on cross-entropy or the CW margin."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sparta.attacks.threat import check_eps, input_gradient, model_mode, project, random_start
from sparta.errors import SpartaError
from sparta.inputs import check_batch, positive_int, positive_number


@dataclass
class PGD:
    """L-inf PGD: `steps` signed-gradient steps of `step_size` (default eps/4), projected.

    With restarts, an example counts as broken if any restart breaks it. `training_mode`
    None evaluates in eval mode; True/False sets BatchNorm's mode during the attack.
    """

    eps: float
    steps: int = 20
    step_size: float | None = None
    restarts: int = 1
    loss: str = "ce"
    random_init: bool = True
    training_mode: bool = False

    def __post_init__(self) -> None:
        self.eps = check_eps(self.eps)
        positive_int("PGD steps", self.steps)
        positive_int("PGD restarts", self.restarts)
        if self.step_size is not None:
            positive_number("PGD step size (alpha)", self.step_size)
        if self.loss not in ("ce", "cw"):
            raise SpartaError(f"PGD loss must be 'ce' or 'cw', got '{self.loss}'")

    @property
    def alpha(self) -> float:
        return self.eps / 4 if self.step_size is None else self.step_size

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, check: bool) -> torch.Tensor:
        x_adv = random_start(x, self.eps) if self.random_init else x.clone()
        for step in range(self.steps):
            grad = input_gradient(model, x_adv, y, self.loss, check=check and step == 0)
            x_adv = project(x_adv + self.alpha * grad.sign(), x, self.eps)
        return x_adv

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, checked: bool = False) -> torch.Tensor:
        """x_adv for (x, y); with restarts, each example keeps the first restart that breaks it.

        `checked`: the caller vouches that x is in [0, 1] and y in the model's classes (the
        training loop, whose data set was checked when it loaded), which skips the batch's
        checks and the two host syncs they cost."""
        if not checked:
            x, y = check_batch(x, y, model)
        with model_mode(model, self.training_mode):
            x_adv = self._run(model, x, y, check=not checked)
            if self.restarts == 1:
                return x_adv.detach()
            with torch.no_grad():
                broken = model(x_adv).argmax(1) != y
            for _ in range(self.restarts - 1):
                if bool(broken.all()):
                    break
                candidate = self._run(model, x, y, check=False)
                with torch.no_grad():
                    newly = (model(candidate).argmax(1) != y) & ~broken
                x_adv = torch.where(newly[:, None, None, None], candidate, x_adv)
                broken |= newly
        return x_adv.detach()

    __call__ = perturb  # attack(model, x, y)


@dataclass
class FGSM:
    """One signed-gradient step of size eps; with `random_init`, FGSM-RS (Wong et al. 2020)."""

    eps: float
    step_size: float | None = None
    random_init: bool = False
    loss: str = "ce"
    training_mode: bool = False

    def __post_init__(self) -> None:
        self.eps = check_eps(self.eps)
        if self.step_size is not None:
            positive_number("FGSM step size (alpha)", self.step_size)
        if self.loss not in ("ce", "cw"):
            raise SpartaError(f"FGSM loss must be 'ce' or 'cw', got '{self.loss}'")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, checked: bool = False) -> torch.Tensor:
        """One signed-gradient step of `step_size` (default eps) from x or a random start, projected.
        `checked` skips the batch's checks, as for PGD."""
        alpha = self.eps if self.step_size is None else self.step_size
        if not checked:
            x, y = check_batch(x, y, model)
        with model_mode(model, self.training_mode):
            start = random_start(x, self.eps) if self.random_init else x
            grad = input_gradient(model, start, y, self.loss, check=not checked)
            return project(start + alpha * grad.sign(), x, self.eps).detach()

    __call__ = perturb  # attack(model, x, y)
