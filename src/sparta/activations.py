"""Every activation behind one registry: `create_activation(name, channels, **options)`.

Each call builds a fresh instance, so a learnable activation is never shared silently
between two sites; every factory receives the channel count, which Sparta, PReLU and
FReLU need.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from sparta.errors import SpartaError
from sparta.parametric import ParametricSoftplus, PSSiLU
from sparta.registry import Registry
from sparta.sparta_activation import Sparta

ActivationFactory = Callable[..., nn.Module]
ACTIVATIONS: Registry[ActivationFactory] = Registry("activation")


class FReLU(nn.Module):
    """Funnel activation, max(x, BN(depthwise 3x3 conv(x))) (Ma et al., ECCV 2020)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 2
        if flat:
            x = x[:, :, None, None]
        y = torch.maximum(x, self.norm(self.conv(x)))
        return y.flatten(1) if flat else y


def _stateless(module: type[nn.Module]) -> ActivationFactory:
    def build(channels: int, **options: object) -> nn.Module:
        del channels
        return module(**options)

    build.__doc__ = f"{module.__name__}: takes no channel count."
    build.module = module  # type: ignore[attr-defined]
    return build


ACTIVATIONS.register("relu")(_stateless(nn.ReLU))
ACTIVATIONS.register("swish", "silu")(_stateless(nn.SiLU))
ACTIVATIONS.register("softplus")(_stateless(nn.Softplus))
ACTIVATIONS.register("gelu")(_stateless(nn.GELU))
ACTIVATIONS.register("elu")(_stateless(nn.ELU))


@ACTIVATIONS.register("prelu")
def _prelu(channels: int, init: float = 0.25) -> nn.Module:
    return nn.PReLU(num_parameters=channels, init=init)


ACTIVATIONS.register("frelu")(FReLU)
ACTIVATIONS.register("pssilu")(PSSiLU)
ACTIVATIONS.register("psoftplus")(ParametricSoftplus)
ACTIVATIONS.register("sparta")(Sparta)


def activation_names() -> list[str]:
    """Registered activation names, for the CLI's choices and `build_model`."""
    return ACTIVATIONS.names()


def create_activation(name: str, channels: int, **options: object) -> nn.Module:
    """Build a new activation module for a site with `channels` channels."""
    factory = ACTIVATIONS.get(name)
    _check_options(name, factory, options)
    return factory(channels, **options)


def check_activation_request(name: str, **options: object) -> None:
    """An unknown name or option is refused before a caller does any work with it."""
    _check_options(name, ACTIVATIONS.get(name), options)


def _check_options(name: str, factory: ActivationFactory, options: dict[str, object]) -> None:
    target = getattr(factory, "module", factory)
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        allowed = sorted(set(params) - {"channels", "self", "inplace"})
        raise SpartaError(
            f"activation '{name}' has no option {', '.join(unknown)}; it takes: {', '.join(allowed) or 'no options'}"
        )
    for key, value in options.items():  # the default's type says what the option takes
        default = params[key].default
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(type(default))
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise SpartaError(
                f"activation '{name}' option {key} takes a {type(default).__name__} "
                f"(default {default!r}), got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SpartaError(f"activation '{name}' option {key} must be finite, got {value}")
