"""Adversarial training losses for your own training loop, one call each.

    loss = sparta.pgd_at_loss(model, x, y, eps=8 / 255)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

Each crafts its attack (gradients with respect to the input only, inside the eps ball and
[0, 1]) and returns the scalar loss to minimise; `sparta train` uses the same functions
(sparta.training.methods). Put the model in train mode first, as for any training step.
"""

from __future__ import annotations

import torch
from torch import nn

from sparta.attacks import check_eps
from sparta.errors import SpartaError
from sparta.inputs import check_batch, non_negative_number, positive_int, positive_number
from sparta.training.methods import METHODS, AttackSetting, madry_step_size, published_attack_bn_mode


def _loss(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None,
    attack_bn_mode: str | None,
    beta: float = 6.0,
) -> torch.Tensor:
    eps = check_eps(eps)
    positive_int("steps", steps)
    if step_size is not None:
        positive_number("step_size", step_size)
    non_negative_number("beta", beta)
    if attack_bn_mode not in (None, "train", "eval"):
        raise SpartaError(f"attack_bn_mode must be 'train' or 'eval', got {attack_bn_mode!r}")
    x, y = check_batch(x, y, model)
    mode = attack_bn_mode or published_attack_bn_mode(method)
    setting = AttackSetting(
        eps=eps,
        steps=steps,
        step_size=madry_step_size(eps, steps) if step_size is None else step_size,
        bn_training=mode == "train",
        trades_beta=beta,
    )
    loss, _ = METHODS.get(method)(model, x, y, setting)
    return loss


def pgd_at_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    attack_bn_mode: str | None = None,
) -> torch.Tensor:
    """Madry et al. (2018): cross-entropy on PGD examples (random start; step 2.5 eps / steps).

    The attack runs with BatchNorm in train mode, as in Madry et al.'s code
    (`attack_bn_mode="eval"` for the other choice)."""
    return _loss("pgd", model, x, y, eps, steps, step_size, attack_bn_mode)


def fgsm_rs_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, attack_bn_mode: str | None = None
) -> torch.Tensor:
    """Wong et al. (2020), "Fast is better than free": one FGSM step of 1.25 eps from a random start."""
    return _loss("fgsm-rs", model, x, y, eps, 1, None, attack_bn_mode)


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    beta: float = 6.0,
    attack_bn_mode: str | None = None,
) -> torch.Tensor:
    """Zhang et al. (2019): CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the KL.

    As in Zhang et al.'s trades.py, the attack and its clean target run in eval mode."""
    return _loss("trades", model, x, y, eps, steps, step_size, attack_bn_mode, beta)
