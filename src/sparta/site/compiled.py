"""The compiled Sparta site: `reference.sparta_function` under torch.compile.

In eager PyTorch each operation of a Sparta site (channel mean, channel max, x - T,
beta *, sigmoid, x *) is its own pass over the feature map, forward and again in
backward, and autograd keeps the full-size intermediates; phi's convolutions are tiny
(2 -> h -> G channels). Memory traffic is the cost, so this path hands the whole site,
as one pure function of (x, parameters), to torch.compile: on CUDA, Inductor fuses the
channel reduction and the gate into Triton kernels and derives a fused backward that can
recompute the sigmoid instead of storing it. Tests check its values and gradients
against the plain reference. Paper: arXiv:2105.08269."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch

from sparta.runtime import compile_backend
from sparta.site.reference import sparta_function


def compiler_available(device: torch.device) -> bool:
    """torch.compile emits fused kernels for this device without a long start: CUDA + Triton.

    (Inductor's C++ backend also fuses on CPU, but its first compile takes a minute.)
    """
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


@functools.cache
def compiled_sparta_function(backend: str = "inductor") -> Callable[..., torch.Tensor]:
    """`sparta_function` under torch.compile, built once per backend and shared by all sites.

    Its backward may run with retain_graph=True (FAB in AutoAttack does so), but it cannot
    be differentiated twice (create_graph=True): use Sparta(fused=False) for that.
    """
    # A backward compiled with donated buffers refuses retain_graph=True, and the flag is
    # read again when the backward runs, so it is turned off for the process (this only
    # gives up a small memory saving of compiled backwards).
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False
    return torch.compile(sparta_function, backend=backend)


def compiled_forward(x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
    """The compiled equivalent of `Sparta.forward` (pooled phi) for a 4-D input, parameters
    (w1, b1, w2, b2, log_beta)."""
    return compiled_sparta_function(compile_backend())(x, *parameters)
