"""Checks against gradient masking (docs/design.md section 5): can the robust accuracy be trusted?

A model whose input gradients are useless (a non-differentiable input step, saturated
outputs) looks robust to gradient attacks without being robust (Athalye et al. 2018).
For a new activation such as Sparta (arXiv 2105.08269) this must be ruled out before a
robust accuracy is believed. Each check is a small function registered in `CHECKS`:

- gradients: input gradients are finite and non-zero;
- eps-sweep: PGD accuracy does not rise with eps, and is near 0 at eps = 0.5 (which lets
  an attacker turn every pixel of a [0, 1] image grey);
- stronger-pgd: more steps and restarts never raise robust accuracy;
- black-box: Square, which never looks at gradients, does not beat white-box PGD
  (AutoAttack's own `checks.py` warns about the same);
- ball-and-box: every adversarial example lies in the eps ball around x and in [0, 1].
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparta.attacks import check_eps, create_attack, input_gradient, model_mode
from sparta.errors import SpartaError
from sparta.evaluation import accuracy, load_run
from sparta.locks import reading_run
from sparta.registry import Registry
from sparta.runfiles import check_eval_file, update_eval

BALL_SLACK = 1e-6  # float rounding allowed on |x_adv - x| <= eps
ROUNDING = 1e-9  # accuracies are k / n: compare them without float noise


@dataclass(frozen=True)
class SanitySettings:
    """Attack budgets and tolerances of the checks.

    A comparison between two accuracies allows `slack(n)`: `tolerance_examples` examples
    or the fraction `tolerance`, whichever is larger.
    """

    steps: int = 20  # PGD of the eps sweep, and the white-box reference
    strong_steps: int = 100  # the stronger PGD
    strong_restarts: int = 3
    square_queries: int | None = None  # None: AutoAttack's 5000 on CUDA, 1000 on a CPU
    large_eps: float = 0.5
    max_large_eps_accuracy: float = 0.10
    tolerance: float = 0.01
    tolerance_examples: int = 1
    batch_size: int = 500

    def slack(self, n: int) -> float:
        """How much one accuracy may exceed another on n examples before a check fails."""
        return max(self.tolerance, self.tolerance_examples / max(1, n))

    def for_device(self, device: torch.device) -> SanitySettings:
        """Fill in the device-dependent default (Square's query budget)."""
        if self.square_queries is not None:
            return self
        return dataclasses.replace(self, square_queries=5000 if device.type == "cuda" else 1000)


@dataclass(frozen=True)
class CheckResult:
    """One sanity check's verdict, a one-line detail, and the numbers behind it."""

    name: str
    passed: bool
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values, for eval.json's "sanity" entry."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AttackRecord:
    """An attack's robust accuracy, and how far its examples strayed (kept instead of the examples)."""

    eps: float
    accuracy: float
    excess: float  # max |x_adv - x| - eps
    low: float  # smallest value of x_adv
    high: float  # largest value of x_adv


class _Recorder:
    """Wraps an attack and measures every batch it returns, so that `accuracy` does the batching."""

    def __init__(self, attack: Any, eps: float) -> None:
        self.attack, self.eps = attack, eps
        self.excess, self.low, self.high = float("-inf"), float("inf"), float("-inf")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.attack.perturb(model, x, y)
        self.excess = max(self.excess, (x_adv - x).abs().amax().item() - self.eps)
        self.low, self.high = min(self.low, x_adv.min().item()), max(self.high, x_adv.max().item())
        return x_adv

    __call__ = perturb  # an Attack: recorder(model, x, y)

    def record(self, accuracy: float) -> AttackRecord:
        return AttackRecord(self.eps, accuracy, self.excess, self.low, self.high)


class Probe:
    """The model, data and eps under test; each attack runs once, from the same seed.

    Checks share attacks through it (the eps sweep's PGD at eps is the black-box check's
    reference), and the ball-and-box check inspects the examples of every attack run.
    """

    def __init__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, settings: SanitySettings, seed: int = 0
    ) -> None:
        self.model, self.x, self.y, self.eps, self.seed = model, x, y, eps, seed
        self.settings = settings.for_device(x.device)
        self.records: dict[str, AttackRecord] = {}

    @property
    def slack(self) -> float:
        return self.settings.slack(len(self.y))

    def run(self, label: str, attack: Any, eps: float) -> AttackRecord:
        """Run any object with `perturb(model, x, y)` at eps, and keep its record under `label`."""
        torch.manual_seed(self.seed)
        recorder = _Recorder(attack, eps)
        self.records[label] = recorder.record(accuracy(self.model, self.x, self.y, recorder, self.settings.batch_size))
        return self.records[label]

    def attack(self, label: str, name: str, eps: float, **options: Any) -> float:
        """Robust accuracy under `create_attack(name, eps, **options)`, run once per label."""
        if label not in self.records:
            self.run(label, create_attack(name, eps, **options), eps)
        return self.records[label].accuracy

    def pgd(self, eps: float) -> float:
        """Robust accuracy under PGD with the settings' steps at `eps`."""
        return self.attack(f"pgd-{self.settings.steps}@{eps:.4g}", "pgd", eps, steps=self.settings.steps)

    def strong_pgd(self) -> float:
        """Robust accuracy under the stronger PGD (more steps, restarts) at the probe's eps."""
        s = self.settings
        return self.attack(
            f"pgd-{s.strong_steps}x{s.strong_restarts}@{self.eps:.4g}",
            "pgd",
            self.eps,
            steps=s.strong_steps,
            restarts=s.strong_restarts,
        )

    def square(self) -> float:
        """Robust accuracy under the black-box Square attack at the probe's eps."""
        return self.attack(
            f"square-{self.settings.square_queries}@{self.eps:.4g}",
            "square",
            self.eps,
            seed=self.seed,
            n_queries=self.settings.square_queries,
        )


Check = Callable[[Probe], CheckResult]
CHECKS: Registry[Check] = Registry("sanity check")  # run in registration order


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


@CHECKS.register("gradients")
def gradients_check(probe: Probe) -> CheckResult:
    """Input gradients of the margin loss (it does not saturate like cross-entropy) at x."""
    grads = []
    with model_mode(probe.model, False):
        for start in range(0, len(probe.y), probe.settings.batch_size):
            end = start + probe.settings.batch_size
            grads.append(input_gradient(probe.model, probe.x[start:end], probe.y[start:end], "cw"))
    grad = torch.cat(grads).flatten(1)
    finite = bool(torch.isfinite(grad).all())
    zero = (grad == 0).all(dim=1).float().mean().item()
    passed = finite and zero <= probe.slack + ROUNDING
    detail = (
        f"{'finite' if finite else 'NOT finite'}, {_pct(zero)} of examples with an all-zero input "
        f"gradient (at most {_pct(probe.slack)})"
    )
    return CheckResult(
        "gradients",
        passed,
        detail,
        {"finite": float(finite), "zero_fraction": zero, "mean_abs": grad.abs().mean().nan_to_num().item()},
    )


@CHECKS.register("eps-sweep")
def eps_sweep_check(probe: Probe) -> CheckResult:
    """PGD accuracy must not rise with eps and must be low at a large eps; either failing suggests masking."""
    s = probe.settings
    points = sorted({0.0, probe.eps / 2, probe.eps, min(1.0, 2 * probe.eps), s.large_eps})
    curve = [(eps, probe.pgd(eps)) for eps in points]
    rises = [(a, b) for (a, acc_a), (b, acc_b) in itertools.pairwise(curve) if acc_b > acc_a + probe.slack + ROUNDING]
    large = dict(curve)[s.large_eps]
    passed = not rises and large <= s.max_large_eps_accuracy + ROUNDING
    detail = "PGD-{} accuracy by eps {{{}}}".format(s.steps, ", ".join(f"{e:.4g}: {_pct(a)}" for e, a in curve))
    if rises:
        detail += "; rises from eps " + ", ".join(f"{a:.4g} to {b:.4g}" for a, b in rises)
    detail += f"; at eps {s.large_eps:.4g} {_pct(large)} (at most {_pct(s.max_large_eps_accuracy)})"
    return CheckResult("eps-sweep", passed, detail, {f"pgd@{e:.4g}": a for e, a in curve})


@CHECKS.register("stronger-pgd")
def stronger_pgd_check(probe: Probe) -> CheckResult:
    """More PGD steps and restarts must not leave accuracy higher than the reference PGD."""
    s = probe.settings
    weak, strong = probe.pgd(probe.eps), probe.strong_pgd()
    passed = strong <= weak + probe.slack + ROUNDING
    detail = (
        f"PGD-{s.strong_steps} x {s.strong_restarts} restarts {_pct(strong)} vs PGD-{s.steps} "
        f"{_pct(weak)} at eps {probe.eps:.4g} (may exceed it by {_pct(probe.slack)})"
    )
    return CheckResult("stronger-pgd", passed, detail, {"pgd": weak, "strong_pgd": strong})


@CHECKS.register("black-box")
def black_box_check(probe: Probe) -> CheckResult:
    """Square against the strongest white-box PGD that the probe runs."""
    white = min(probe.pgd(probe.eps), probe.strong_pgd())
    black = probe.square()
    passed = black >= white - probe.slack - ROUNDING
    detail = (
        f"Square ({probe.settings.square_queries} queries) {_pct(black)} vs white-box PGD {_pct(white)} "
        f"at eps {probe.eps:.4g} (may fall below it by {_pct(probe.slack)})"
    )
    return CheckResult("black-box", passed, detail, {"square": black, "white_box": white})


@CHECKS.register("ball-and-box")
def ball_and_box_check(probe: Probe) -> CheckResult:
    """Every attack run so far, plus PGD and Square at eps when no check has run them."""
    probe.pgd(probe.eps)
    probe.square()
    excess = max(record.excess for record in probe.records.values())
    low = min(record.low for record in probe.records.values())
    high = max(record.high for record in probe.records.values())
    passed = excess <= BALL_SLACK and low >= 0.0 and high <= 1.0
    detail = (
        f"{len(probe.records)} attacks: max |x_adv - x| - eps = {excess:.2e} (at most {BALL_SLACK:.0e}), "
        f"values in [{low:.4g}, {high:.4g}]"
    )
    return CheckResult(
        "ball-and-box",
        passed,
        detail,
        {"attacks": float(len(probe.records)), "max_excess": excess, "min": low, "max": high},
    )


def run_sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    checks: list[str] | None = None,
    seed: int = 0,
    settings: SanitySettings | None = None,
) -> list[CheckResult]:
    """Run the named checks (default: all), in registry order, on (x, y) at eps."""
    eps = check_eps(eps)
    if len(x) == 0 or len(x) != len(y):
        raise SpartaError(f"sanity checks need as many labels as images, at least one; got {len(x)} and {len(y)}")
    wanted = {CHECKS.canonical(name) for name in (CHECKS.names() if checks is None else checks)}
    probe = Probe(model, x, y, eps, settings or SanitySettings(), seed)
    return [CHECKS.get(name)(probe) for name in CHECKS if name in wanted]


def check_run(
    run_dir: str | Path,
    n: int | None = None,
    eps: float | None = None,
    device: str = "auto",
    data_root: str | None = None,
    settings: SanitySettings | None = None,
) -> list[CheckResult]:
    """Run every check on a run's model and first n test images; store them in eval.json under "sanity"."""
    run_dir = Path(run_dir)
    check_eval_file(run_dir)  # a damaged or unwritable eval.json stops the checks before they run
    with reading_run(run_dir):
        model, _, config, x, y = load_run(run_dir, n, device, data_root)
        eps = config.eps if eps is None else eps
        settings = (settings or SanitySettings()).for_device(x.device)
        results = run_sanity_checks(model, x, y, eps, seed=config.seed, settings=settings)
    sanity = {
        "eps": eps,
        "n": len(y),
        "seed": config.seed,
        "passed": all(r.passed for r in results),
        "settings": dataclasses.asdict(settings),
        "checks": [r.as_dict() for r in results],
    }
    update_eval(run_dir, lambda document: {"run": str(run_dir), "results": [], **document, "sanity": sanity})
    return results
