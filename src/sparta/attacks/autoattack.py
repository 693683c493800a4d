"""AutoAttack (Croce & Hein 2020, standard version) through the `pyautoattack` package.

A thin adapter over pyautoattack 0.2.0: it (1) wraps the model in a plain nn.Module,
since the package's dynamic-defence check failed on an nn.Sequential; (2) passes the
model's device (the package defaults to CPU); (3) caps the number of target classes
at num_classes - 1 for data sets with fewer than 10 classes; (4) checks that what comes
back lies in the eps ball and [0, 1], and recounts accuracy itself; (5) lets Square's
query budget be lowered (`n_queries`), for quick checks on a CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from sparta.attacks.threat import check_eps, model_mode
from sparta.errors import SpartaError
from sparta.inputs import check_batch, check_probe, positive_int

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
# Classes an attack needs: the targeted DLR loss reads the 4th largest logit, the untargeted the 3rd.
CLASSES_NEEDED = {"apgd-t": 4, "fab-t": 4, "apgd-dlr": 3}


class _Logits(nn.Module):
    """A plain Module around any model, so the package's checks see one forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()


@dataclass
class AutoAttack:
    """AutoAttack at eps through pyautoattack, the reference robust-accuracy evaluation."""

    eps: float
    version: str = "standard"
    seed: int = 0
    batch_size: int = 500
    attacks: tuple[str, ...] | None = None  # with version="custom"
    n_queries: int | None = None  # Square's query budget; None keeps the package's 5000

    def __post_init__(self) -> None:
        self.eps = check_eps(self.eps)
        positive_int("AutoAttack batch_size", self.batch_size)
        if self.n_queries is not None:
            positive_int("Square's n_queries", self.n_queries)
        if self.version not in ("standard", "custom"):
            raise SpartaError(f"AutoAttack version must be 'standard' or 'custom', got {self.version!r}")
        if self.version == "custom" and not self.attacks:
            raise SpartaError('AutoAttack version="custom" needs attacks=(...), the attacks to run')

    def _check_classes(self, num_classes: int) -> None:
        """The DLR loss compares the largest logits: the targeted one needs 4 classes, the
        untargeted 3 (Croce & Hein 2020); refuse rather than report a crippled attack."""
        attacks = STANDARD_ATTACKS if self.version == "standard" else tuple(self.attacks or ())
        needs = max(CLASSES_NEEDED.get(name, 2) for name in attacks)
        if num_classes < needs:
            which = "standard version" if self.version == "standard" else "attacks " + ", ".join(attacks)
            raise SpartaError(
                f"AutoAttack's {which} needs at least {needs} classes (its DLR loss compares the largest "
                f"logits), this model has {num_classes}; "
                "use AutoAttack(eps, version='custom', attacks=('apgd-ce', 'square'))"
            )

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run the package's evaluation on (x, y) in eval mode and check its points lie in the ball and [0, 1]."""
        from pyautoattack import AutoAttack as PackageAutoAttack

        x, y = check_batch(x, y, model)
        device = x.device
        wrapped = _Logits(model)
        with model_mode(model, False):
            with torch.no_grad():
                num_classes = check_probe(model(x[:1]), y)
            self._check_classes(num_classes)
            options: dict[str, list[str]] = {}
            if self.version == "custom":
                options["attacks"] = list(self.attacks or ())
            attack = PackageAutoAttack(
                wrapped, norm="Linf", eps=self.eps, version=self.version, seed=self.seed, device=device, **options
            )
            attack.logger.setLevel(logging.ERROR)
            if self.n_queries is not None:
                attack.square.n_queries = self.n_queries
            targets = max(1, min(9, num_classes - 1))
            attack.apgd_targeted.n_target_classes = targets
            attack.fab.n_target_classes = targets
            x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=self.batch_size)
        x_adv = x_adv.to(device)
        overshoot = (x_adv - x).abs().amax().item()
        if overshoot > self.eps + 1e-5 or x_adv.min() < 0 or x_adv.max() > 1:
            raise SpartaError(
                f"AutoAttack returned points outside the eps ball or [0, 1] "
                f"(max |delta| = {overshoot:.6f}, eps = {self.eps})"
            )
        return x_adv.detach()

    __call__ = perturb  # attack(model, x, y)
