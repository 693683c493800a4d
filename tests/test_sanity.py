"""Gradient-masking checks pass on an honest model and fail on one that hides its gradients."""

import json
import re
import shutil

import pytest
import torch
from torch import nn

from sparta import SpartaError
from sparta.cli import main
from sparta.sanity import CHECKS, CheckResult, Probe, SanitySettings, run_sanity_checks

EPS = 0.1
N = 32
# Smaller budgets than the defaults, to keep the tests fast; the checks' logic is the same.
FAST = SanitySettings(strong_steps=50, strong_restarts=2, square_queries=100)


class Quantised(nn.Module):
    """Rounds the input to 5 grey levels first: zero input gradient almost everywhere."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


@pytest.fixture()
def data(digits_test):
    x, y = digits_test
    return x[:N], y[:N]


def _copy_run(trained_run, tmp_path):
    """A private copy of the shared run, without the eval.json other tests may have written."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "eval.json").unlink(missing_ok=True)
    return run


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_honest_model_passes_every_check(trained_model, data):
    x, y = data
    settings = SanitySettings(strong_steps=50, square_queries=300)
    results = run_sanity_checks(trained_model, x, y, EPS, settings=settings)
    assert [r.name for r in results] == CHECKS.names()
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    assert not failed
    sweep = _by_name(results)["eps-sweep"].numbers
    assert sweep["pgd@0"] > 0.5 and sweep["pgd@0.5"] <= 0.1  # accurate, and broken at a large eps


def test_masked_model_fails_gradient_and_black_box_checks(trained_model, data):
    x, y = data
    results = _by_name(run_sanity_checks(Quantised(trained_model).eval(), x, y, EPS, settings=FAST))
    assert not results["gradients"].passed and results["gradients"].numbers["zero_fraction"] == 1.0
    black = results["black-box"]
    assert not black.passed and black.numbers["square"] < black.numbers["white_box"]
    assert not results["eps-sweep"].passed
    assert results["ball-and-box"].passed  # the examples are fine; the attack is what fails


def test_a_weaker_second_attack_is_caught(trained_model, data):
    """With 'strong' PGD set to one step, more budget would raise accuracy: the check must say so."""
    x, y = data
    weak = SanitySettings(strong_steps=1, strong_restarts=1)
    (result,) = run_sanity_checks(trained_model, x, y, 0.05, checks=["stronger-pgd"], settings=weak)
    assert not result.passed and result.numbers["strong_pgd"] > result.numbers["pgd"]


class Leaky:
    """An attack that returns what it was given: points outside the ball or the box."""

    def __init__(self, x_adv: torch.Tensor) -> None:
        self.x_adv = x_adv

    def perturb(self, model, x, y):
        return self.x_adv


def test_examples_outside_the_ball_or_box_fail(trained_model, data):
    x, y = data
    outside_ball = (x + 2 * EPS).clamp(0, 1)
    outside_box = torch.where(x < EPS / 2, x - EPS / 2, x)  # within eps of x, but below 0
    for bad, number, value in ((outside_ball, "max_excess", EPS), (outside_box, "min", -EPS / 2)):
        probe = Probe(trained_model, x, y, EPS, FAST)
        probe.run("leaky", Leaky(bad), EPS)
        result = CHECKS.get("ball-and-box")(probe)
        assert not result.passed and result.numbers["attacks"] == 3  # the leaky one, PGD and Square
        assert result.numbers[number] == pytest.approx(value, abs=1e-6)


def test_checks_share_attacks_and_run_in_registry_order(trained_model, data):
    x, y = data
    results = run_sanity_checks(trained_model, x, y, EPS, checks=["ball-and-box", "eps-sweep"], settings=FAST)
    assert [r.name for r in results] == ["eps-sweep", "ball-and-box"]
    # the sweep's 5 PGD runs plus Square; PGD at eps is not run twice
    assert results[1].numbers["attacks"] == 6


@pytest.mark.parametrize(
    "checks, eps, n, message",
    [
        (["gradient-free"], EPS, N, "unknown sanity check 'gradient-free'"),
        (None, 1.5, N, "eps must lie in [0, 1]"),
        (None, EPS, 0, "at least one"),
    ],
)
def test_bad_input_is_a_one_line_error(trained_model, data, checks, eps, n, message):
    x, y = data
    with pytest.raises(SpartaError, match=re.escape(message)):
        run_sanity_checks(trained_model, x[:n], y[:n], eps, checks=checks, settings=FAST)


def test_cli_sanity_prints_checks_and_keeps_results(trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path)
    assert main(["eval", str(run), "--attacks", "clean", "--n", "32"]) == 0
    assert main(["eval", str(run), "--sanity", "--n", "32", "--eps", str(EPS)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines[-len(CHECKS.names()) :]] == [["PASS", n] for n in CHECKS.names()]
    document = json.loads((run / "eval.json").read_text())
    assert [r["attack"] for r in document["results"]] == ["clean"]  # --sanity alone runs no attack
    sanity = document["sanity"]
    assert sanity["passed"] and sanity["n"] == 32 and sanity["eps"] == pytest.approx(EPS)
    assert [c["name"] for c in sanity["checks"]] == CHECKS.names()
    assert sanity["settings"]["square_queries"] == (5000 if torch.cuda.is_available() else 1000)
    # a later evaluation keeps the sanity results
    assert main(["eval", str(run), "--attacks", "fgsm", "--n", "32"]) == 0
    assert "sanity" in json.loads((run / "eval.json").read_text())


def test_cli_exits_1_when_a_check_fails(trained_run, tmp_path, capsys, monkeypatch):
    run = _copy_run(trained_run, tmp_path)
    failing = CheckResult("gradients", False, "forced failure", {})
    monkeypatch.setattr("sparta.sanity.run_sanity_checks", lambda *args, **kwargs: [failing])
    assert main(["eval", str(run), "--sanity", "--n", "8"]) == 1
    assert "FAIL  gradients" in capsys.readouterr().out
    assert json.loads((run / "eval.json").read_text())["sanity"]["passed"] is False
