"""The threshold maps T(X) a trained Sparta predicts, for clean and adversarial images.

Forward hooks capture the input X of the first Sparta site (in forward order) that sees a
feature map; `Sparta.threshold(X)` then gives T(X). Comparing T on clean and PGD inputs
shows whether the threshold follows the perturbation or the image content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparta.attacks import create_attack, model_mode
from sparta.errors import SpartaError
from sparta.evaluation import DEFAULT_OPTIONS
from sparta.report.sites import site_inputs
from sparta.sparta_activation import Sparta


@dataclass
class ThresholdMaps:
    """Images (N x H x W, or N x H x W x 3) and threshold maps (N x h x w) at one site."""

    site: str
    site_shape: tuple[int, int, int]  # C, h, w of the site's input
    maps_per_site: int  # distinct maps T has at the site (1: one map shared by all channels)
    attack: str
    eps: float
    images: np.ndarray
    adversarial: np.ndarray
    t_clean: np.ndarray
    t_adversarial: np.ndarray
    labels: np.ndarray
    pred_clean: np.ndarray
    pred_adversarial: np.ndarray


def has_sparta(model: nn.Module) -> bool:
    """Whether the model has a Sparta site, so that threshold maps can be drawn for it."""
    return any(isinstance(m, Sparta) for m in model.modules())


def first_site_input(model: nn.Module, x: torch.Tensor) -> tuple[str, Sparta, torch.Tensor]:
    """(name, module, X) of the first Sparta site whose input is an N x C x H x W map."""
    sites = site_inputs(model, x)
    if not sites:
        raise SpartaError("no Sparta site of the model receives an N x C x H x W feature map")
    return sites[0]


def _site_map(model: nn.Module, x: torch.Tensor) -> tuple[str, Sparta, torch.Tensor, torch.Tensor]:
    """(site name, module, X, T(X)) at the first Sparta site."""
    name, module, features = first_site_input(model, x)
    with torch.no_grad():
        return name, module, features, module.threshold(features)


def distinct_maps(module: Sparta) -> int:
    """How many distinct threshold maps the site predicts: G, or one per channel (depthwise)."""
    return module.channels if module.phi_kind == "depthwise" else module.groups


def _as_image(x: torch.Tensor) -> np.ndarray:
    """N x C x H x W in [0, 1] -> N x H x W (grey) or N x H x W x 3 for imshow."""
    array = x.detach().float().cpu().numpy()
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


def _as_map(t: torch.Tensor) -> np.ndarray:
    """One map per image: the map itself (G = 1), else the mean over channels."""
    return t.detach().float().mean(dim=1).cpu().numpy()


def threshold_maps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    seed: int = 0,
) -> ThresholdMaps:
    """T(X) at the first Sparta site for x and for PGD adversarial versions of x at eps."""
    torch.manual_seed(seed)
    settings = DEFAULT_OPTIONS["pgd"]
    attack = create_attack("pgd", eps, **settings)
    with model_mode(model, False):
        x_adv = attack.perturb(model, x, y)
        with torch.no_grad():
            pred_clean, pred_adv = model(x).argmax(1), model(x_adv).argmax(1)
        site, module, features, t_clean = _site_map(model, x)
        t_adv = _site_map(model, x_adv)[3]
    _, channels, height, width = features.shape  # an N x C x H x W map (first_site_input)
    return ThresholdMaps(
        site=site,
        site_shape=(channels, height, width),
        maps_per_site=distinct_maps(module),
        attack=f"PGD-{settings['steps']}",
        eps=eps,
        images=_as_image(x),
        adversarial=_as_image(x_adv),
        t_clean=_as_map(t_clean),
        t_adversarial=_as_map(t_adv),
        labels=y.cpu().numpy(),
        pred_clean=pred_clean.cpu().numpy(),
        pred_adversarial=pred_adv.cpu().numpy(),
    )


def run_threshold_maps(
    run_dir: str | Path, images: int = 4, device: str = "auto", data_root: str | None = None
) -> ThresholdMaps | None:
    """Threshold maps of a run's model on its first test images at the run's eps; None without Sparta."""
    from sparta.evaluation import load_run

    model, _, config, x, y = load_run(run_dir, images, device, data_root)
    return threshold_maps(model, x, y, config.eps, config.seed) if has_sparta(model) else None
