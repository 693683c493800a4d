"""What each Sparta site learned, in numbers measured on real inputs.

A result is Sparta's only if Sparta stayed Sparta: a site that trained into ReLU (a large
beta, T near 0 everywhere) is neither credited nor blamed for it. For every site that
sees a feature map these numbers say how sharp its gate is (beta), how much its threshold
moves between positions and images (T's spread, against the spread of the input it is
compared with), and how far its output is from ReLU's on the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from sparta.attacks import model_mode
from sparta.sparta_activation import Sparta


@dataclass(frozen=True)
class SiteSummary:
    """One site's learned function on a batch of inputs (see the module docstring)."""

    site: str
    beta: float  # the gate's sharpness (mean over channels when per channel)
    threshold_mean: float
    threshold_sd: float  # over images, positions and maps: how much T attends
    input_sd: float  # the spread of X, the scale T is compared with
    from_relu: float  # sum |Sparta(X) - ReLU(X)| / sum ReLU(X)
    negative_passed: float  # what Sparta lets through where X < 0, over sum ReLU(X)


def gate_curve(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    """Sparta's output x * sigmoid(beta (x - T)) where T is one number: a site's learned
    function drawn as a curve, at its mean T (and at mean ± sd, the range T moves over)."""
    return x * expit(beta * (x - threshold))


def site_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, Sparta, torch.Tensor]]:
    """(name, module, X) of every Sparta site whose input is an N x C x H x W map, in forward order."""
    names: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, Sparta):
            names.setdefault(id(module), name)
    seen: list[tuple[str, Sparta, torch.Tensor]] = []

    def capture(module: Sparta, inputs: tuple[torch.Tensor, ...]) -> None:
        if inputs[0].dim() == 4:
            seen.append((names[id(module)], module, inputs[0].detach()))

    handles = [m.register_forward_pre_hook(capture) for m in model.modules() if isinstance(m, Sparta)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def site_summaries(model: nn.Module, x: torch.Tensor) -> list[SiteSummary]:
    """A `SiteSummary` for every Sparta site that sees a feature map, the model in eval mode
    (its mode is restored afterwards)."""
    with model_mode(model, False):
        return [_summary(name, module, features) for name, module, features in site_inputs(model, x)]


def _summary(name: str, module: Sparta, features: torch.Tensor) -> SiteSummary:
    """The figures of one site on its captured input X."""
    with torch.no_grad():
        out, threshold = module(features).float(), module.threshold(features).float()
    features = features.float()
    relu_mass = features.clamp_min(0).sum().clamp_min(1e-12)
    return SiteSummary(
        site=name,
        beta=float(module.beta.detach().mean()),
        threshold_mean=float(threshold.mean()),
        threshold_sd=float(threshold.std()),
        input_sd=float(features.std()),
        from_relu=float((out - features.clamp_min(0)).abs().sum() / relu_mass),
        negative_passed=float(-(out * (features < 0)).sum() / relu_mass),
    )


def run_site_summaries(
    run_dir: str | Path, n: int = 200, device: str = "auto", data_root: str | None = None
) -> list[SiteSummary]:
    """`site_summaries` of a run's model on its first n clean test images ([] without Sparta)."""
    from sparta.evaluation import load_run

    model, _, _, x, _ = load_run(run_dir, n, device, data_root)
    return site_summaries(model, x)
