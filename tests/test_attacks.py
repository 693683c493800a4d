"""Attacks respect the eps ball and the [0, 1] box, and are as strong as they should be."""

import pytest
import torch
from torch import nn

from sparta import SpartaError, build_model
from sparta.attacks import FGSM, PGD, AutoAttack, create_attack, margin_loss, model_mode, parse_eps
from sparta.evaluation import accuracy

EPS = 0.1


def _inside(x_adv, x, eps):
    return (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(EPS),
        FGSM(EPS, step_size=1.25 * EPS, random_init=True),
        PGD(EPS, steps=5),
        PGD(EPS, steps=5, loss="cw"),
        PGD(EPS, steps=3, restarts=2, step_size=0.5),
    ],
)
def test_gradient_attacks_stay_in_ball_and_box(attack, trained_model, digits_test):
    x, y = digits_test
    x = x.clone()
    x[:8] = 0.0  # points on the box's faces: the ball pokes out of [0, 1]
    x[8:16] = 1.0
    x_adv = attack.perturb(trained_model, x, y)
    assert _inside(x_adv, x, EPS)
    assert (x_adv != x).any()


def test_pgd_beats_fgsm_beats_clean(trained_model, digits_test):
    x, y = digits_test
    clean = accuracy(trained_model, x, y)
    fgsm = accuracy(trained_model, x, y, FGSM(0.05))
    pgd = accuracy(trained_model, x, y, PGD(0.05, steps=20))
    assert clean > 0.6
    assert pgd < fgsm < clean


def test_more_restarts_never_raise_robust_accuracy(trained_model, digits_test):
    x, y = digits_test
    results = []
    for restarts in (1, 3):
        torch.manual_seed(0)
        results.append(accuracy(trained_model, x, y, PGD(0.03, steps=5, restarts=restarts)))
    assert results[1] <= results[0]


def test_eps_zero_changes_nothing(trained_model, digits_test):
    x, y = digits_test
    assert torch.equal(PGD(0.0, steps=3).perturb(trained_model, x, y), x)


def test_attack_restores_train_mode_of_every_submodule():
    model = build_model("resnet18", "relu", 10, 1, image_size=28)
    model.train()
    model.layer1.eval()
    PGD(EPS, steps=1).perturb(model, torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
    assert model.training and not model.layer1.training and model.layer2.training


def test_attack_leaves_no_weight_gradients(trained_model, digits_test):
    x, y = digits_test
    PGD(EPS, steps=2).perturb(trained_model, x, y)
    assert all(p.grad is None for p in trained_model.parameters())


def test_margin_loss_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    assert torch.allclose(margin_loss(logits, torch.tensor([0, 2])), torch.tensor([-1.0, 6.0]))


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("8/255", 8 / 255), ("0", 0.0), ("1", 1.0)])
def test_parse_eps(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1.5", "-0.1", "abc", "1/0"])
def test_bad_eps_is_clear(text):
    with pytest.raises(SpartaError, match="eps"):
        parse_eps(text)


def test_bad_attack_settings_are_clear():
    with pytest.raises(SpartaError, match="eps must lie in"):
        PGD(2.0)
    with pytest.raises(SpartaError, match="PGD steps must be a whole number >= 1"):
        PGD(0.1, steps=0)
    with pytest.raises(SpartaError, match="unknown attack 'pgdd'"):
        create_attack("pgdd", 0.1)
    with pytest.raises(SpartaError, match=r"eps must be one number in \[0, 1\] \(pixel space\), got list \[0.05"):
        PGD([0.05, 0.1])  # type: ignore[arg-type]
    one = PGD(torch.tensor(0.1)).eps  # a 0-d tensor is one number
    assert isinstance(one, float) and one == pytest.approx(0.1)


def test_autoattack_breaks_a_non_robust_model_inside_the_ball(trained_model, digits_test):
    x, y = digits_test[0][:24], digits_test[1][:24]
    pgd = accuracy(trained_model, x, y, PGD(EPS, steps=20))
    x_adv = AutoAttack(EPS).perturb(trained_model, x, y)
    assert _inside(x_adv, x, EPS)
    with torch.no_grad():
        robust = (trained_model(x_adv).argmax(1) == y).float().mean().item()
    assert robust <= pgd


def test_autoattack_adapter_takes_sequential_and_few_classes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,))
    x_adv = AutoAttack(0.05, version="custom", attacks=("apgd-ce", "apgd-t")).perturb(model, x, y)
    assert _inside(x_adv, x, 0.05)


def test_autoattack_adapter_rejects_points_outside_the_ball(monkeypatch, trained_model, digits_test):
    import pyautoattack

    def broken(self, x, y, batch_size=250):
        return (x + 0.5).clamp(0, 1), y

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", broken)
    with pytest.raises(SpartaError, match="outside the eps ball"):
        AutoAttack(EPS).perturb(trained_model, *digits_test)


def test_model_mode_restores_after_error():
    model = nn.Sequential(nn.BatchNorm1d(3)).train()
    with pytest.raises(RuntimeError):
        with model_mode(model, False):
            raise RuntimeError("boom")
    assert model.training and model[0].training


def test_attacks_are_callables_and_alpha_names_the_step_size(trained_model, digits_test):
    from sparta import create_attack

    x, y = digits_test
    pgd = create_attack("pgd", 0.1, steps=5, alpha=0.01)
    assert pgd.alpha == 0.01
    torch.manual_seed(0)
    called = pgd(trained_model, x[:16], y[:16])
    torch.manual_seed(0)
    assert torch.equal(called, pgd.perturb(trained_model, x[:16], y[:16]))
    with pytest.raises(SpartaError, match="alpha or step_size"):
        create_attack("pgd", 0.1, alpha=0.01, step_size=0.02)


@pytest.mark.parametrize("loss_name", ["pgd_at_loss", "fgsm_rs_loss", "trades_loss"])
def test_public_adversarial_losses_train_a_users_model(loss_name, digits_test):
    import sparta

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x, y = digits_test
    model(x[:2])
    loss = getattr(sparta, loss_name)(model.train(), x[:16], y[:16], eps=0.1)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    clean = torch.nn.functional.cross_entropy(model(x[:16]), y[:16])
    assert loss.item() > clean.item() - 1e-6  # an adversarial loss is not below the clean one
    with pytest.raises(SpartaError, match="eps must lie in"):
        getattr(sparta, loss_name)(model, x[:4], y[:4], eps=2.0)
