"""Ordinary mistakes made through the Python API, each with the behaviour it is promised.

A researcher calls `sparta.evaluate`, the attacks, the training losses and `Sparta` with
tensors of their own. Every case here either must work (what the field accepts: int32
labels, float64 images, a run directory where a file is meant) or must raise a one-line
`SpartaError` naming the argument. Each outcome is put in one class:

- ok: as promised;
- traceback: an exception other than SpartaError (from deep inside torch or a package);
- unclear: a SpartaError whose message does not name the problem;
- silently wrong: no error where one is due, or a wrong result that looks fine.

tests/test_api_faults.py asserts every case; `python scripts/api_faults.py` prints the table
(scripts/fault_battery.py runs it after the CLI's cases).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import sparta
from sparta.errors import SpartaError


@dataclass
class Case:
    """`call()` must raise a SpartaError mentioning every word of `names` (when `names`
    is given), or, with `names=None`, return a value for which `check(value)` holds."""

    name: str
    call: Callable[[], object]
    names: tuple[str, ...] | None = None
    check: Callable[[object], bool] | None = None


def tiny_model(num_classes: int = 10, act: str = "relu") -> nn.Module:
    """A SmallCNN for 1 x 16 x 16 images, fixed weights."""
    torch.manual_seed(0)
    return sparta.build_model("smallcnn", act, num_classes=num_classes, in_channels=1, image_size=16).eval()


def batch(n: int = 16, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """n images in [0, 1] of shape 1 x 16 x 16 and labels below num_classes."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 16, 16, generator=generator), torch.randint(num_classes, (n,), generator=generator)


class FlatModel(nn.Module):
    """A model that returns one number per image (shape (N,)), not logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(1)


def _evaluate(x, y, model=None, attacks=("clean",), eps=0.1, **options):
    attacks = list(attacks) if isinstance(attacks, tuple) else attacks
    return sparta.evaluate(model or tiny_model(), x, y, attacks, eps, **options)


def _attack(name, x, y, eps=0.1, model=None, **options):
    return sparta.create_attack(name, eps, **options)(model or tiny_model(), x, y)


def _same_accuracy_as(reference: float) -> Callable[[object], bool]:
    return lambda records: abs(records[0]["accuracy"] - reference) < 1e-9


def _inside_ball(x: torch.Tensor, eps: float) -> Callable[[object], bool]:
    return lambda x_adv: bool(((x_adv - x).abs().max() <= eps + 1e-6) and x_adv.min() >= 0 and x_adv.max() <= 1)


def cases() -> list[Case]:
    """Every case, built fresh (tensors and models made here, nothing shared between cases)."""
    x, y = batch()
    clean = sparta.accuracy(tiny_model(), x, y)
    nan_x = x.clone()
    nan_x[0, 0, 0, 0] = float("nan")
    inf_x = x.clone()
    inf_x[1, 0, 2, 2] = float("inf")
    run_dir = Path(tempfile.mkdtemp(prefix="sparta-api-faults-"))
    return [
        # images
        Case("evaluate: images scaled to [0, 5]", lambda: _evaluate(x * 5, y), ("images", "[0, 1]")),
        Case("evaluate: images centred ([-0.5, 0.5])", lambda: _evaluate(x - 0.5, y), ("images", "[0, 1]")),
        Case("pgd: images scaled to [0, 5]", lambda: _attack("pgd", x * 5, y), ("images", "[0, 1]")),
        Case("fgsm: images centred", lambda: _attack("fgsm", x - 0.5, y), ("images", "[0, 1]")),
        Case("evaluate: a NaN pixel", lambda: _evaluate(nan_x, y), ("images", "NaN")),
        Case("pgd: an inf pixel", lambda: _attack("pgd", inf_x, y), ("images", "inf")),
        Case("evaluate: uint8 images", lambda: _evaluate((x * 255).to(torch.uint8), y), ("images", "uint8")),
        Case(
            "evaluate: float64 images (accepted)",
            lambda: _evaluate(x.double(), y),
            check=_same_accuracy_as(clean),
        ),
        Case("pgd: float64 images (accepted)", lambda: _attack("pgd", x.double(), y), check=_inside_ball(x, 0.1)),
        Case("evaluate: images of shape N x H x W", lambda: _evaluate(x[:, 0], y), ("images", "N x C x H x W")),
        Case(
            "evaluate: images of another size", lambda: _evaluate(torch.rand(4, 1, 9, 9), y[:4]), ("16 x 16", "9 x 9")
        ),
        # labels
        Case("evaluate: labels above the classes (y + 10)", lambda: _evaluate(x, y + 10), ("labels", "10 classes")),
        Case("evaluate: negative labels", lambda: _evaluate(x, y - 10), ("labels",)),
        Case("pgd: labels above the classes", lambda: _attack("pgd", x, y + 10), ("labels", "classes")),
        Case("evaluate: float labels", lambda: _evaluate(x, y.float()), ("labels", "integer")),
        Case("evaluate: int32 labels (accepted)", lambda: _evaluate(x, y.int()), check=_same_accuracy_as(clean)),
        Case("pgd: uint8 labels (accepted)", lambda: _attack("pgd", x, y.to(torch.uint8)), check=_inside_ball(x, 0.1)),
        Case(
            "evaluate: labels as a Python list (accepted)",
            lambda: _evaluate(x, y.tolist()),
            check=_same_accuracy_as(clean),
        ),
        Case("evaluate: one-hot labels", lambda: _evaluate(x, nn.functional.one_hot(y, 10)), ("labels", "vector")),
        Case("evaluate: x and y of different lengths", lambda: _evaluate(x, y[:5]), ("images", "labels", "16", "5")),
        Case("pgd: x and y of different lengths", lambda: _attack("pgd", x, y[:5]), ("labels", "16", "5")),
        # models
        Case(
            "evaluate: a model returning shape (N,)",
            lambda: _evaluate(x, y, model=FlatModel()),
            ("model", "logits of shape", "(1,)"),
        ),
        Case("pgd: a model returning shape (N,)", lambda: _attack("pgd", x, y, model=FlatModel()), ("model", "(16,)")),
        Case(
            "autoattack on a 2-class model",
            lambda: _attack("autoattack", x[:4], y[:4] % 2, model=tiny_model(2)),
            ("AutoAttack", "classes"),
        ),
        Case(
            "autoattack on a 3-class model",
            lambda: _attack("autoattack", x[:4], y[:4] % 3, model=tiny_model(3)),
            ("AutoAttack", "classes"),
        ),
        Case(
            "evaluate: load_pretrained's (model, record) as the model",
            lambda: _evaluate(x, y, model=(tiny_model(), {})),
            ("model must be a torch.nn.Module", "(model, record)"),
        ),
        Case(
            "evaluate: 3-channel images, a 1-channel model",
            lambda: _evaluate(torch.rand(4, 3, 16, 16), y[:4]),
            ("N x 1 x H x W", "3-channel images of 16 x 16"),
        ),
        Case(
            "load_checkpoint(file, model=) of another activation",
            lambda: sparta.load_checkpoint(
                sparta.save_checkpoint(tiny_model(), run_dir / "relu.safetensors"), model=tiny_model(act="sparta")
            ),
            ("does not match", "missing"),
        ),
        Case("pgd: a model that is not a Module", lambda: _attack("pgd", x, y, model=lambda t: t), ("nn.Module",)),
        # attack settings
        Case("pgd alpha=-0.05", lambda: _attack("pgd", x, y, alpha=-0.05), ("step",)),
        Case("pgd step_size=nan", lambda: _attack("pgd", x, y, step_size=float("nan")), ("step",)),
        Case("pgd steps=0", lambda: _attack("pgd", x, y, steps=0), ("steps",)),
        Case("pgd steps=2.5", lambda: _attack("pgd", x, y, steps=2.5), ("steps",)),
        Case("pgd restarts=0", lambda: _attack("pgd", x, y, restarts=0), ("restarts",)),
        Case("pgd eps=nan", lambda: _attack("pgd", x, y, eps=float("nan")), ("eps",)),
        Case("pgd eps=-0.1", lambda: _attack("pgd", x, y, eps=-0.1), ("eps",)),
        Case("pgd eps=[0.05, 0.1] (a sweep)", lambda: _attack("pgd", x, y, eps=[0.05, 0.1]), ("eps", "one number")),
        Case(
            "pgd eps as a 0-d tensor (accepted)",
            lambda: _attack("pgd", x, y, eps=torch.tensor(0.1)),
            check=_inside_ball(x, 0.1),
        ),
        Case("fgsm step_size=-1", lambda: _attack("fgsm", x, y, step_size=-1.0), ("step",)),
        Case("unknown attack option", lambda: _attack("pgd", x, y, stepz=3), ("stepz",)),
        Case("unknown attack name", lambda: _attack("pgdd", x, y), ("pgdd",)),
        Case(
            "evaluate: attacks as one string (accepted)",
            lambda: _evaluate(x, y, attacks="clean"),
            check=_same_accuracy_as(clean),
        ),
        Case("evaluate: batch_size=0", lambda: _evaluate(x, y, batch_size=0), ("batch size",)),
        # training losses
        Case("pgd_at_loss steps=0", lambda: sparta.pgd_at_loss(tiny_model().train(), x, y, 0.1, steps=0), ("steps",)),
        Case(
            "pgd_at_loss step_size=-0.01",
            lambda: sparta.pgd_at_loss(tiny_model().train(), x, y, 0.1, step_size=-0.01),
            ("step",),
        ),
        Case("trades_loss beta=-1", lambda: sparta.trades_loss(tiny_model().train(), x, y, 0.1, beta=-1.0), ("beta",)),
        Case(
            "trades_loss beta=nan",
            lambda: sparta.trades_loss(tiny_model().train(), x, y, 0.1, beta=float("nan")),
            ("beta",),
        ),
        Case(
            "pgd_at_loss: images scaled to [0, 255]",
            lambda: sparta.pgd_at_loss(tiny_model().train(), x * 255, y, 0.1),
            ("images", "[0, 1]"),
        ),
        Case(
            "fgsm_rs_loss: labels above the classes",
            lambda: sparta.fgsm_rs_loss(tiny_model().train(), x, y + 10, 0.1),
            ("labels",),
        ),
        Case(
            "trades_loss: x and y of different lengths",
            lambda: sparta.trades_loss(tiny_model().train(), x, y[:3], 0.1),
            ("labels", "16", "3"),
        ),
        Case(
            "pgd_at_loss: int32 labels (accepted)",
            lambda: sparta.pgd_at_loss(tiny_model().train(), x, y.int(), 0.1, steps=1),
            check=lambda loss: bool(torch.isfinite(loss)),
        ),
        # the activation
        Case(
            "Sparta: a bf16 tensor outside autocast (accepted)",
            lambda: sparta.Sparta(4)(torch.randn(2, 4, 5, 5, dtype=torch.bfloat16)),
            check=lambda out: out.dtype == torch.bfloat16 and out.shape == (2, 4, 5, 5),
        ),
        Case("Sparta: a 3-D tensor", lambda: sparta.Sparta(4)(torch.randn(4, 5, 5)), ("Sparta", "N x C x H x W")),
        Case(
            "convert_activations: an unknown activation",
            lambda: sparta.convert_activations(nn.Sequential(nn.ReLU(), nn.Linear(3, 3)), "spartaa"),
            ("unknown activation", "spartaa"),
        ),
        Case(
            "share_sparta on a model without Sparta", lambda: sparta.share_sparta(tiny_model(), "network"), ("Sparta",)
        ),
        # files
        Case(
            "evaluate_run on a folder that is not a run",
            lambda: sparta.evaluate_run(run_dir, ["clean"]),
            ("not a run directory", "config.json"),
        ),
        Case(
            "import_sparta(model, RUN_DIR) without sparta.safetensors",
            lambda: sparta.import_sparta(tiny_model(act="sparta"), run_dir),
            ("sparta.safetensors",),
        ),
    ]


def outcome(case: Case) -> tuple[str, str]:
    """(class, detail) of one case: ok, traceback, unclear or silently wrong."""
    try:
        value = case.call()
    except SpartaError as err:
        message = str(err)
        if case.names is None:
            return "unclear", f"refused what it should take: {message}"
        if "\n" in message.strip() or not all(word.lower() in message.lower() for word in case.names):
            return "unclear", message
        return "ok", message
    except Exception as err:
        return (
            "traceback",
            f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120] if str(err).strip() else ''}",
        )
    if case.names is not None:
        return "silently wrong", "no error"
    if case.check is not None and not case.check(value):
        return "silently wrong", "ran, but the result is wrong"
    return "ok", "ran"


def main() -> int:
    """Print one line per case and the count per class; exit 1 unless every case is ok."""
    results = [(case.name, *outcome(case)) for case in cases()]
    for name, kind, detail in results:
        print(f"{'ok  ' if kind == 'ok' else 'BAD '}{name:55s} {kind:15s} {detail[:100]}")
    counts = {
        kind: sum(result[1] == kind for result in results) for kind in ("ok", "traceback", "unclear", "silently wrong")
    }
    print(f"{len(results)} API cases: " + ", ".join(f"{count} {kind}" for kind, count in counts.items()))
    return 0 if counts["ok"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
