"""The Triton site as torch operators: `torch.ops.sparta.triton_site` and its autograd.

A pooled Sparta site in four kernel passes (`triton_kernels`) around phi's two small
convolutions, which stay library calls (2 -> h -> G channels on one map per image).
Registered with `torch.library.custom_op`, with fake implementations, so that
`torch.compile(model)` traces a Sparta model through it without graph breaks and the
backward is itself made of operators (two Triton passes and
`aten.convolution_backward`), never a Python detour the compiler cannot see.

The forward returns what the backward needs besides y (pooled maps, tie counts, phi's
hidden map, the threshold); the sigmoid is recomputed. Weight gradients an attack does
not ask for are skipped in eager mode, as the engine skips them for built-in operations.
Arithmetic in float32 (float64 for float64 maps); phi runs in the map's dtype, as the
plain path does under autocast. Checked against the plain reference in
tests/test_triton_site.py. Paper: arXiv:2105.08269.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from sparta.site import triton_kernels as kernels
from sparta.site.fused import engine_needs, refuse_double_backward

TILE = 4096  # elements of x one program holds at once (channels x pixels)
PIXEL_BLOCK = 128  # the most pixels a program takes


def _blocks(channels: int, pixels: int) -> tuple[int, int]:
    """Tile sides: up to PIXEL_BLOCK pixels, and as many of a group's channels as fit in TILE."""
    pixel_block = min(PIXEL_BLOCK, triton.next_power_of_2(pixels))
    return max(1, min(triton.next_power_of_2(channels), TILE // pixel_block)), pixel_block


def _dense(t: Tensor) -> Tensor:
    """t itself if it is NCHW- or channels_last-contiguous (the layouts the kernels read), else a copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


def _strides(t: Tensor) -> tuple[int, int, int]:
    """(image, channel, pixel) strides of a dense N x C x H x W map, either layout."""
    return t.stride(0), t.stride(1), t.stride(3)


def _acc(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def _beta(log_beta: Tensor, dtype: torch.dtype) -> tuple[Tensor, int]:
    """beta as the plain path multiplies with it (in the map's dtype), and its stride per channel."""
    beta = log_beta.detach().exp().to(dtype).contiguous()
    return beta.reshape(-1), 1 if beta.dim() else 0


def _phi_weights(dtype: torch.dtype, *weights: Tensor) -> list[Tensor]:
    return [w.detach().to(dtype) for w in weights]


@torch.library.custom_op("sparta::triton_site", mutates_args=())
def triton_site(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, log_beta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """y = x * sigmoid(beta (x - phi([mean_c x, max_c x]))), with pooled, ties, hidden, threshold."""
    x = _dense(x)
    n, channels, height, width = x.shape
    pixels, groups = height * width, w2.shape[0]
    channel_block, pixel_block = _blocks(channels, pixels)
    pooled = x.new_empty(n, 2, height, width)
    ties = torch.empty(n, height, width, dtype=torch.int32, device=x.device)
    grid = (n, triton.cdiv(pixels, pixel_block))
    kernels.pool_kernel[grid](
        x, pooled, ties, channels, pixels, *_strides(x), BC=channel_block, BP=pixel_block, ACC=_acc(x.dtype)
    )
    cw1, cb1, cw2, cb2 = _phi_weights(x.dtype, w1, b1, w2, b2)
    padding = w1.shape[-1] // 2
    with torch.autocast(x.device.type, enabled=False):  # phi in the map's dtype, as under autocast
        hidden = F.relu(F.conv2d(pooled, cw1, cb1, padding=padding))
        threshold = F.conv2d(hidden, cw2, cb2, padding=padding).contiguous()
    beta, beta_stride = _beta(log_beta, x.dtype)
    y = torch.empty_like(x)
    channel_block, _ = _blocks(channels // groups, pixels)
    kernels.gate_kernel[(n * groups, grid[1])](
        x, threshold, beta, y, channels, pixels, groups, *_strides(x), beta_stride,
        BC=channel_block, BP=pixel_block, ACC=_acc(x.dtype),
    )  # fmt: skip
    return y, pooled, ties, hidden, threshold


@triton_site.register_fake
def _triton_site_fake(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, log_beta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    n, _, height, width = x.shape
    return (
        torch.empty_like(x),
        x.new_empty(n, 2, height, width),
        x.new_empty(n, height, width, dtype=torch.int32),
        x.new_empty(n, w1.shape[0], height, width),
        x.new_empty(n, w2.shape[0], height, width),
    )


@torch.library.custom_op("sparta::triton_site_gate_reduce", mutates_args=())
def gate_reduce(grad: Tensor, x: Tensor, threshold: Tensor, log_beta: Tensor, want_beta: bool) -> tuple[Tensor, Tensor]:
    """The threshold's gradient, and log_beta's (zeros unless want_beta)."""
    grad, x = _dense(grad), _dense(x)
    n, channels, height, width = x.shape
    pixels, groups = height * width, threshold.shape[1]
    channel_block, pixel_block = _blocks(channels // groups, pixels)
    blocks = triton.cdiv(pixels, pixel_block)
    grad_threshold = torch.empty_like(threshold)
    accumulate = torch.float64 if x.dtype == torch.float64 else torch.float32
    partial = torch.zeros(n * blocks if want_beta else 1, channels, dtype=accumulate, device=x.device)
    beta, beta_stride = _beta(log_beta, x.dtype)
    kernels.gate_reduce_kernel[(n * groups, blocks)](
        grad, x, threshold, beta, grad_threshold, partial, channels, pixels, groups,
        *_strides(x), *_strides(grad), beta_stride,
        BC=channel_block, BP=pixel_block, ACC=_acc(x.dtype), WANT_BETA=want_beta,
    )  # fmt: skip
    if not want_beta:
        return grad_threshold, torch.zeros_like(log_beta)
    per_channel = partial.sum(dim=0)
    summed = per_channel if log_beta.dim() else per_channel.sum()
    return grad_threshold, (summed * log_beta.detach().exp().to(summed.dtype)).to(log_beta.dtype)


@gate_reduce.register_fake
def _gate_reduce_fake(
    grad: Tensor, x: Tensor, threshold: Tensor, log_beta: Tensor, want_beta: bool
) -> tuple[Tensor, Tensor]:
    return torch.empty_like(threshold), torch.empty_like(log_beta)


@torch.library.custom_op("sparta::triton_site_input_grad", mutates_args=())
def input_grad(
    grad: Tensor, x: Tensor, threshold: Tensor, log_beta: Tensor, pooled: Tensor, ties: Tensor, grad_pooled: Tensor
) -> Tensor:
    """d loss / d x: the gate's share and the pool's (mean and max) in one pass."""
    grad, x = _dense(grad), _dense(x)
    n, channels, height, width = x.shape
    pixels, groups = height * width, threshold.shape[1]
    channel_block, pixel_block = _blocks(channels // groups, pixels)
    out = torch.empty_like(x)
    beta, beta_stride = _beta(log_beta, x.dtype)
    kernels.input_grad_kernel[(n * groups, triton.cdiv(pixels, pixel_block))](
        grad, x, threshold, beta, pooled, ties, grad_pooled.contiguous(), out, channels, pixels, groups,
        *_strides(x), *_strides(grad), beta_stride,
        BC=channel_block, BP=pixel_block, ACC=_acc(x.dtype),
    )  # fmt: skip
    return out


@input_grad.register_fake
def _input_grad_fake(
    grad: Tensor, x: Tensor, threshold: Tensor, log_beta: Tensor, pooled: Tensor, ties: Tensor, grad_pooled: Tensor
) -> Tensor:
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    x, w1, _, w2, _, log_beta = inputs
    _, pooled, ties, hidden, threshold = output
    ctx.save_for_backward(x, pooled, ties, hidden, threshold, w1, w2, log_beta)


def _conv_backward(grad: Tensor, inputs: Tensor, weight: Tensor, mask: list[bool]) -> tuple[Tensor, ...]:
    """(input, weight, bias) gradients of phi's "same" convolution, as `mask` asks."""
    padding = weight.shape[-1] // 2
    return torch.ops.aten.convolution_backward(
        grad, inputs, weight, [weight.shape[0]], [1, 1], [padding, padding], [1, 1], False, [0, 0], 1, mask
    )


def _backward(ctx, grad: Tensor, *unused: Tensor) -> tuple[Tensor | None, ...]:
    """Gradients for x and for the parameters the running backward wants; None for the rest."""
    compiling = torch.compiler.is_compiling()
    if not compiling:
        refuse_double_backward()
    x, pooled, ties, hidden, threshold, w1, w2, log_beta = ctx.saved_tensors
    needs_x, *needs_weights, needs_beta = ctx.needs_input_grad
    want_weights = any(needs_weights) and (compiling or any(engine_needs(w) for w in (w1, w2)))
    want_beta = bool(needs_beta) and (compiling or engine_needs(log_beta))
    grad_threshold, grad_log_beta = gate_reduce(grad, x, threshold, log_beta, want_beta)
    cw1, cw2 = _phi_weights(x.dtype, w1, w2)
    grad_hidden, grad_w2, grad_b2 = _conv_backward(grad_threshold, hidden, cw2, [True, want_weights, want_weights])
    grad_hidden = torch.ops.aten.threshold_backward(grad_hidden, hidden, 0)
    grad_pooled, grad_w1, grad_b1 = _conv_backward(grad_hidden, pooled, cw1, [needs_x, want_weights, want_weights])
    grad_x = input_grad(grad, x, threshold, log_beta, pooled, ties, grad_pooled) if needs_x else None
    computed = (grad_w1, grad_b1, grad_w2, grad_b2)
    weight_grads = [g.to(w1.dtype) if want_weights and needed else None for g, needed in zip(computed, needs_weights)]
    return (grad_x, *weight_grads, grad_log_beta if want_beta else None)


triton_site.register_autograd(_backward, setup_context=_setup_context)


def triton_forward(x: Tensor, *parameters: Tensor) -> Tensor:
    """`Sparta.forward` (pooled phi) for a 4-D input, parameters (w1, b1, w2, b2, log_beta)."""
    return triton_site(x, *parameters)[0]
