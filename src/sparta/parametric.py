"""Learnable smooth activations that the robustness literature reports as strongest under
adversarial training; Sparta is compared with them under the same training and attacks.

Each keeps its parameters in their valid range under any optimizer step by storing an
unconstrained value and mapping it (exp for a positive slope, a scaled sigmoid for a
shift below 1), and each acts element-wise on any shape. One set of parameters per site
(the papers share one across the network; per site is at least as flexible).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sparta.errors import SpartaError

BETA_MAX = 0.999  # PSSiLU divides by 1 - beta: the shift stays below 1 by this margin


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class PSSiLU(nn.Module):
    """Parametric shifted SiLU (Dai, Mahloujifar, Mittal, "Parameterizing Activation
    Functions for Adversarial Robustness", arXiv:2110.05626, the PSSiLU equation of Sec. 4):

        PSSiLU(x) = x * (sigmoid(alpha * x) - beta) / (1 - beta),  alpha > 0, 0 <= beta < 1.

    beta = 0 gives SiLU with slope alpha (Swish); alpha -> infinity with beta = 0 gives
    ReLU; beta > 0 lets negative inputs give small positive outputs, the shape the paper
    links to robustness. Here alpha = exp(a) and beta = BETA_MAX * sigmoid(b).
    """

    def __init__(self, channels: int | None = None, alpha0: float = 1.0, beta0: float = 0.1) -> None:
        super().__init__()
        del channels  # element-wise, one alpha and one beta per site
        if not alpha0 > 0:
            raise SpartaError(f"pssilu alpha0 must be > 0, got {alpha0}")
        if not 0 < beta0 < BETA_MAX:
            raise SpartaError(f"pssilu beta0 must be in (0, {BETA_MAX}), got {beta0}")
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha0)))
        self.beta_logit = nn.Parameter(torch.tensor(_logit(beta0 / BETA_MAX)))

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    @property
    def beta(self) -> torch.Tensor:
        return BETA_MAX * torch.sigmoid(self.beta_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha.to(x.dtype), self.beta.to(x.dtype)
        return x * (torch.sigmoid(alpha * x) - beta) / (1 - beta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha.item():.4g}, beta={self.beta.item():.4g}"


class ParametricSoftplus(nn.Module):
    """Parametric Softplus of Smooth Adversarial Training (Xie et al., arXiv:2006.14536,
    Sec. 4, "Parametric Softplus"):

        f(x) = log(1 + exp(alpha * x)) / alpha,  alpha > 0.

    alpha = 1 is Softplus; alpha -> infinity is ReLU. SAT uses alpha = 10, the default
    start here; alpha = exp(a) is learned.
    """

    def __init__(self, channels: int | None = None, alpha0: float = 10.0) -> None:
        super().__init__()
        del channels
        if not alpha0 > 0:
            raise SpartaError(f"psoftplus alpha0 must be > 0, got {alpha0}")
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha0)))

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.to(x.dtype)
        return F.softplus(alpha * x) / alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha.item():.4g}"
