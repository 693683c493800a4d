"""The plain Sparta site with the pooled phi: the reference every faster path is checked against.

Sparta(X) = X * sigmoid(beta * (X - phi([mean_c X, max_c X]))), as a pure function of
(x, parameters) and its pieces, which `sparta.Sparta` and the other paths share.
Paper: arXiv:2105.08269."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
