"""Swap the activations of any nn.Module for another activation, in place.

Channel counts are read from the nearest preceding layer that defines them
(Conv/Linear/BatchNorm/GroupNorm/LayerNorm), in the order the modules are registered.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from sparta.activations import FReLU, check_activation_request, create_activation
from sparta.errors import SpartaError
from sparta.parametric import ParametricSoftplus, PSSiLU
from sparta.sparta_activation import Sparta

# torch's element-wise activations and every activation module of this library
RELU_FAMILY: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Hardswish,
    FReLU,
    PSSiLU,
    ParametricSoftplus,
    Sparta,
)


def _channels_of(module: nn.Module) -> int | None:
    for attr in ("out_channels", "out_features", "num_features", "num_channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    return int(shape[-1]) if shape else None


def _checked_exclusions(model: nn.Module, exclude: Iterable[str]) -> tuple[str, ...]:
    """The excluded module paths, each checked to name a module of the model."""
    skip = tuple(exclude)
    unknown = [path for path in skip if path not in dict(model.named_modules(remove_duplicate=False))]
    if unknown:
        raise SpartaError(f"exclude names no module of the model: {', '.join(unknown)}")
    return skip


def convert_activations(
    model: nn.Module,
    name: str,
    *,
    targets: tuple[type[nn.Module], ...] = RELU_FAMILY,
    exclude: Iterable[str] = (),
    **options: object,
) -> nn.Module:
    """Replace every module of a `targets` type with a new `name` activation.

    Each activation module gets a new instance of its own. A module object used at two
    sites (one `self.relu` called twice) becomes one new module used at both sites.
    Functional calls (`F.relu`) are not modules and stay as they are. `exclude` names
    module paths (as in `model.named_modules()`) left as they are, with everything below them.
    """
    check_activation_request(name, **options)
    skip = _checked_exclusions(model, exclude)
    replaced: dict[int, nn.Module] = {}
    channels: int | None = None
    inside: tuple[str, ...] = ()  # paths of replaced activations: their own layers are not the model's
    for path, module in list(model.named_modules(remove_duplicate=False)):
        if inside and path.startswith(inside):
            continue
        if path in skip or path.startswith(tuple(p + "." for p in skip)) or not isinstance(module, targets):
            channels = _channels_of(module) or channels
            continue
        if not path:
            raise SpartaError("the model itself is an activation; nothing to convert inside it")
        if id(module) not in replaced:
            if channels is None:
                raise SpartaError(
                    f"cannot infer the channel count of activation '{path}': no Conv/Linear/Norm layer precedes it"
                )
            replaced[id(module)] = create_activation(name, channels, **options)
        parent_path, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent_path), attr, replaced[id(module)])
        inside += (path + ".",)
    if not replaced:
        raise SpartaError(f"no activation of types {', '.join(t.__name__ for t in targets)} found in the model")
    return model
