"""Pieces every model shares: input normalisation and the activation factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sparta.activations import create_activation
from sparta.errors import SpartaError


class Normalize(nn.Module):
    """(x - mean) / std inside the model, so attacks and eps live in [0, 1] pixel space."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.numel():
            # C x H x W only: callers probe with one image, and N says nothing about the fault
            got = f"shape {tuple(x.shape)}"
            if x.dim() == 4:
                got = f"{x.shape[1]}-channel images of {x.shape[2]} x {x.shape[3]}"
            raise SpartaError(f"the model takes N x {self.mean.numel()} x H x W images in [0, 1], got {got}")
        return (x - self.mean.view(1, -1, 1, 1).to(x.dtype)) / self.std.view(1, -1, 1, 1).to(x.dtype)


# What a model calls once per activation site, with the site's channel count.
SiteActivation = Callable[[int], nn.Module]


class NamedActivation:
    """Builds a new registered activation (by name and options) per site: `act(channels)`."""

    def __init__(self, name: str, **options: object) -> None:
        self.name = name
        self.options = options

    def __call__(self, channels: int) -> nn.Module:
        return create_activation(self.name, channels, **self.options)


class CallableActivation:
    """Builds a new activation per site from a callable of the caller's own (timm's
    `act_layer` convention): called with the channel count if it takes one (nn.PReLU,
    `lambda c: ...`), else without (nn.Tanh); it must return an nn.Module."""

    def __init__(self, make: Callable[..., nn.Module], **options: object) -> None:
        self.make = make
        self.options = options
        self.takes_channels: bool | None = None  # found out at the first call

    def __call__(self, channels: int) -> nn.Module:
        if self.takes_channels is None:
            try:
                module = self.make(channels, **self.options)
                self.takes_channels = True
            except TypeError as with_channels:
                try:
                    module = self.make(**self.options)
                except TypeError:
                    raise SpartaError(
                        f"activation {self.make!r} can be called neither with the channel count "
                        f"nor without: {with_channels}"
                    ) from None
                self.takes_channels = False
        else:
            module = self.make(channels, **self.options) if self.takes_channels else self.make(**self.options)
        if not isinstance(module, nn.Module):
            raise SpartaError(f"activation {self.make!r} returned {type(module).__name__}, not an nn.Module")
        return module


class StagedNet(nn.Module):
    """A classifier whose top-level children listed in `stage_names` are its stages.

    Stages are the units of Sparta sharing and transfer (stem, each group of blocks at
    one resolution, the head).
    """

    stage_names: tuple[str, ...] = ()

    def stages(self) -> dict[str, nn.Module]:
        """The stages by name, in order: the units of Sparta sharing and transfer."""
        return {name: getattr(self, name) for name in self.stage_names}
