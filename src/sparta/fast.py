"""The compiled Sparta path, and the choice between a site's implementations.

The same function as `Sparta.forward`, with fewer passes over memory.

In eager PyTorch each operation of a Sparta site (channel mean, channel max, x - T,
beta *, sigmoid, x *) is its own pass over the feature map, forward and again in
backward, and autograd keeps the full-size intermediates; phi's convolutions are tiny
(2 -> h -> G channels). Memory traffic is the cost, so the fast path hands the whole site,
as one pure function of (x, parameters), to torch.compile: on CUDA, Inductor fuses the
channel reduction and the gate into Triton kernels and derives a fused backward that can
recompute the sigmoid instead of storing it.

Inside a model that is itself being compiled the plain path is used: the enclosing
graph fuses it the same way. `Sparta.forward`'s plain code stays the reference; tests
check values and gradients of this path against it. Paper: arXiv:2105.08269."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sparta.runtime import compile_backend


def same_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1) -> torch.Tensor:
    """conv2d with odd kernel and zero "same" padding, as phi uses it.

    On a 1 x 1 map (a Sparta after a Linear layer) only the kernel's centre tap meets the
    input, so the convolution is a matrix product; it is computed as one. Besides being
    cheaper, this keeps the map out of cuDNN: Inductor's shape rules expect the weight
    gradient of a convolution over a 1 x 1 channels_last input in the weight's memory
    format, cuDNN returns it row-major, and the compiled backward stops on the mismatch
    (seen on an H100, torch 2.11).
    """
    if x.shape[-2:] != (1, 1):
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=groups)
    centre = weight.shape[-1] // 2
    taps = weight[:, :, centre, centre]  # out x in/groups
    if groups == 1:
        y = x.flatten(1) @ taps.t()
    else:  # depthwise: one tap per channel
        y = x.flatten(1) * taps.flatten()
    if bias is not None:
        y = y + bias
    return y[:, :, None, None]


def channel_pool(x: torch.Tensor) -> torch.Tensor:
    """The pooled phi's input: channel mean and channel max, N x 2 x H x W."""
    return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)


def pooled_phi(
    pooled: torch.Tensor,
    conv1_weight: torch.Tensor,
    conv1_bias: torch.Tensor,
    conv2_weight: torch.Tensor,
    conv2_bias: torch.Tensor,
) -> torch.Tensor:
    """The pooled phi's convolutions: conv -> ReLU -> conv, 2 -> h -> G maps."""
    hidden = F.relu(same_conv(pooled, conv1_weight, conv1_bias))
    return same_conv(hidden, conv2_weight, conv2_bias)


def sparta_function(
    x: torch.Tensor,
    conv1_weight: torch.Tensor,
    conv1_bias: torch.Tensor,
    conv2_weight: torch.Tensor,
    conv2_bias: torch.Tensor,
    log_beta: torch.Tensor,
) -> torch.Tensor:
    """Sparta with the pooled phi, x: N x C x H x W; log_beta: a scalar or C values.

    Pure (no module, no Python state), so one compiled graph serves every site of every
    model; the compiler sees the reduction, the small convolutions and the gate together.
    """
    t = pooled_phi(channel_pool(x), conv1_weight, conv1_bias, conv2_weight, conv2_bias)
    groups, channels = t.shape[1], x.shape[1]
    if 1 < groups < channels:
        t = t.repeat_interleave(channels // groups, dim=1)
    beta = log_beta.exp().to(x.dtype)
    if beta.dim():
        beta = beta.view(1, -1, 1, 1)
    return x * torch.sigmoid(beta * (x - t))


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


def site_path(fused: bool | str | None, x: torch.Tensor) -> str:
    """Which implementation a pooled Sparta site runs: "plain", "fused" or "compiled".

    - Inside a compiled model: plain (the enclosing graph fuses it itself).
    - fused names a path ("plain", "fused", "compiled"): that one, on any device.
    - fused=False: plain, the reference.
    - CPU, fused None or True: the fused autograd function (`sparta.fused_site`): the same
      function in fewer passes, natively where `sparta.native_site` builds its library
      (results/speed/cpu.md).
    - CUDA, fused=True: the torch.compile'd site (Triton) where the compiler is available,
      otherwise the fused function. fused=None stays plain on CUDA: on an H100 a ResNet-18
      bf16 channels_last step took 42.6 and 41.9 ms with the compiled site against 39.0
      and 37.3 ms plain (results/gpu/speed-step.md), and the fused function has not been
      timed there yet.
    """
    if torch.compiler.is_compiling() or fused is False:
        return "plain"
    if isinstance(fused, str):
        return fused
    if x.device.type == "cpu":
        return "fused" if not torch.is_autocast_enabled("cpu") else "plain"
    if fused is None:
        return "plain"
    return "compiled" if compiler_available(x.device) else "fused"


def compiled_forward(x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
    """The compiled equivalent of `Sparta.forward` (pooled phi) for a 4-D input, parameters
    (w1, b1, w2, b2, log_beta)."""
    return compiled_sparta_function(compile_backend())(x, *parameters)
