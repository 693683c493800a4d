"""Training methods as loss functions: each returns (loss, logits); one loop does the rest.

standard: cross-entropy on clean inputs. pgd: Madry et al. 2018. fgsm-rs: Wong et al.
2020 ("Fast is better than free"). trades: Zhang et al. 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparta.attacks import FGSM, PGD, model_mode, project
from sparta.inputs import check_logits
from sparta.registry import Registry


@dataclass
class AttackSetting:
    """The training attack at one optimisation step: eps (after warm-up), steps, step size, BatchNorm mode."""

    eps: float
    steps: int
    step_size: float
    bn_training: bool = True  # BatchNorm mode while crafting the attack
    trades_beta: float = 6.0
    attack_model: nn.Module | None = None  # the bare model when training goes through DDP
    # The batch is the training loop's own: its data set's images and labels were checked
    # when it loaded, so the step skips the per-batch checks and the host syncs they cost.
    checked: bool = False

    def target(self, model: nn.Module) -> nn.Module:
        """The module attacks differentiate: never a DDP wrapper, whose reducer expects weight grads."""
        return model if self.attack_model is None else self.attack_model


# BatchNorm mode while a method crafts its training attack, as its authors' code does:
# Zhang et al.'s trades.py switches to eval mode for the attack and the clean target.
PUBLISHED_ATTACK_BN_MODE = {"trades": "eval"}


def madry_step_size(eps: float, steps: int) -> float:
    """The training attack's default step: 2.5 * eps / steps (Madry et al.)."""
    return 2.5 * eps / steps


def published_attack_bn_mode(method: str) -> str:
    """The BatchNorm mode a method's authors craft its training attack in (train or eval)."""
    return PUBLISHED_ATTACK_BN_MODE.get(METHODS.canonical(method), "train")


Method = Callable[[nn.Module, torch.Tensor, torch.Tensor, AttackSetting], tuple[torch.Tensor, torch.Tensor]]
METHODS: Registry[Method] = Registry("training method")


@METHODS.register("standard")
def standard(model, x, y, setting):
    """Cross-entropy on clean inputs (no attack)."""
    logits = model(x)
    check_logits(logits, y, labels_checked=setting.checked)
    return F.cross_entropy(logits.float(), y), logits


@METHODS.register("pgd", "pgd-at")
def pgd_at(model, x, y, setting):
    """PGD adversarial training (Madry et al. 2018): cross-entropy on PGD examples."""
    if setting.eps > 0:
        attack = PGD(setting.eps, steps=setting.steps, step_size=setting.step_size, training_mode=setting.bn_training)
        x = attack.perturb(setting.target(model), x, y, checked=setting.checked)
    logits = model(x)
    check_logits(logits, y, labels_checked=setting.checked or setting.eps > 0)  # the attack checked them
    return F.cross_entropy(logits.float(), y), logits


@METHODS.register("fgsm-rs", "fast")
def fgsm_rs(model, x, y, setting):
    """FGSM with a random start and step 1.25 eps (Wong et al. 2020), cross-entropy on its examples."""
    if setting.eps > 0:
        attack = FGSM(setting.eps, step_size=1.25 * setting.eps, random_init=True, training_mode=setting.bn_training)
        x = attack.perturb(setting.target(model), x, y, checked=setting.checked)
    logits = model(x)
    check_logits(logits, y, labels_checked=setting.checked or setting.eps > 0)  # the attack checked them
    return F.cross_entropy(logits.float(), y), logits


def trades_attack(model: nn.Module, x: torch.Tensor, clean_probs: torch.Tensor, setting: AttackSetting) -> torch.Tensor:
    """Maximise KL(f(x) || f(x')) inside the ball, from a small Gaussian start (clean_probs = f(x))."""
    x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
    for _ in range(setting.steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), clean_probs, reduction="sum")
        grad = torch.autograd.grad(kl, x_adv)[0]
        x_adv = project(x_adv.detach() + setting.step_size * grad.sign(), x, setting.eps)
    return x_adv.detach()


@METHODS.register("trades")
def trades(model, x, y, setting):
    """CE(f(x), y) + beta * KL(f(x) || f(x')), as Zhang et al.'s reference.

    The attack and its clean target run in the BatchNorm mode of `setting.bn_training`
    (eval by default, as published: `--attack-bn-mode train` gives the train-mode variant);
    the loss itself is computed in train mode."""
    if setting.eps > 0:
        target = setting.target(model)
        with model_mode(target, setting.bn_training), torch.no_grad():
            clean_probs = F.softmax(target(x).float(), dim=1)
        with model_mode(target, setting.bn_training):
            x_adv = trades_attack(target, x, clean_probs, setting)
    else:
        x_adv = x
    logits, logits_adv = model(x), model(x_adv)  # separate passes: BatchNorm sees each alone
    check_logits(logits, y, labels_checked=setting.checked)
    natural = F.cross_entropy(logits.float(), y)
    robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1), reduction="batchmean")
    return natural + setting.trades_beta * robust, logits
