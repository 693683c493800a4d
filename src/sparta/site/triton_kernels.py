"""The Triton kernels of a pooled Sparta site: pool, gate, and their backward passes.

A feature map is read as N x C x P (P = H * W pixels) through its strides, so one kernel
serves NCHW and channels_last: the element (n, c, p) sits at n*sn + c*sc + p*sp. Each
program takes one image, one threshold group's channels and a block of pixels, and walks
the group's channels in tiles, so the per-pixel sums over channels (the pool, the
threshold's gradient) stay in registers. Arithmetic is in ACC (float32, or float64 for
float64 maps); loads and stores keep the map's dtype.

Four passes in all: pool (read x), gate (read x, write y), the backward's reduction
(read g and x: T's and beta's gradients) and the input gradient (read g and x, write
the gradient, the pool's share included), so the sigmoid is recomputed, never stored.
Under `TRITON_INTERPRET=1` the same kernels run on CPU tensors (the tests do so).
Paper: arXiv:2105.08269.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def pool_kernel(x_ptr, pooled_ptr, ties_ptr, C, P, sn, sc, sp, BC: tl.constexpr, BP: tl.constexpr, ACC: tl.constexpr):
    """pooled[n, 0, p] = mean_c x, pooled[n, 1, p] = max_c x, ties[n, p] = how many channels hold the max."""
    n = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1) * BP + tl.arange(0, BP)
    in_map = p < P
    total = tl.zeros([BP], ACC)
    best = tl.full([BP], float("-inf"), ACC)
    count = tl.zeros([BP], tl.int32)
    for c0 in range(0, C, BC):
        c = c0 + tl.arange(0, BC)
        mask = (c < C)[:, None] & in_map[None, :]
        x = tl.load(x_ptr + n * sn + c[:, None] * sc + p[None, :] * sp, mask=mask, other=float("-inf")).to(ACC)
        total += tl.sum(tl.where(mask, x, 0.0), axis=0)
        tile_best = tl.max(x, axis=0)
        tile_count = tl.sum(((x == tile_best[None, :]) & mask).to(tl.int32), axis=0)
        count = tl.where(tile_best > best, tile_count, tl.where(tile_best == best, count + tile_count, count))
        best = tl.maximum(best, tile_best)
    out = pooled_ptr + n * 2 * P + p
    tl.store(out, (total / C).to(pooled_ptr.dtype.element_ty), mask=in_map)
    tl.store(out + P, best.to(pooled_ptr.dtype.element_ty), mask=in_map)
    tl.store(ties_ptr + n * P + p, count, mask=in_map)


@triton.jit
def _group_block(t_ptr, C, P, G, BP: tl.constexpr, ACC: tl.constexpr):
    """The program's image n, threshold group g (its `width` channels), pixel block p and
    T over it: where every gate pass starts."""
    ng = tl.program_id(0).to(tl.int64)
    n, g = ng // G, ng % G
    p = tl.program_id(1) * BP + tl.arange(0, BP)
    in_map = p < P
    t = tl.load(t_ptr + ng * P + p, mask=in_map, other=0.0).to(ACC)
    return ng, n, g, C // G, p, in_map, t


@triton.jit
def _gate_tile(
    x_ptr, beta_ptr, beta_stride, n, g, width, c0, p, in_map, t, sn, sc, sp, BC: tl.constexpr, ACC: tl.constexpr
):
    """The tile of the group's channels from c0: their indices, masks, x, beta and the gate."""
    local = c0 + tl.arange(0, BC)
    c = g * width + local
    in_group = local < width
    mask = in_group[:, None] & in_map[None, :]
    x = tl.load(x_ptr + n * sn + c[:, None] * sc + p[None, :] * sp, mask=mask, other=0.0).to(ACC)
    beta = tl.load(beta_ptr + c * beta_stride, mask=in_group, other=0.0).to(ACC)
    gate = tl.sigmoid(beta[:, None] * (x - t[None, :]))
    return c, in_group, mask, x, beta, gate


@triton.jit
def _logit_grad(g_ptr, n, c, p, mask, x, gate, gn, gc, gp, ACC: tl.constexpr):
    """The incoming gradient g on the tile and q = g x s (1 - s), the gradient at the gate's logit over beta."""
    grad = tl.load(g_ptr + n * gn + c[:, None] * gc + p[None, :] * gp, mask=mask, other=0.0).to(ACC)
    return grad, grad * x * gate * (1.0 - gate)


@triton.jit
def gate_kernel(
    x_ptr,
    t_ptr,
    beta_ptr,
    y_ptr,
    C,
    P,
    G,
    sn,
    sc,
    sp,
    beta_stride,
    BC: tl.constexpr,
    BP: tl.constexpr,
    ACC: tl.constexpr,
):
    """y = x * sigmoid(beta_c * (x - T[n, g(c), p])); y has x's strides."""
    _, n, g, width, p, in_map, t = _group_block(t_ptr, C, P, G, BP, ACC)
    for c0 in range(0, width, BC):
        c, _, mask, x, _, gate = _gate_tile(
            x_ptr, beta_ptr, beta_stride, n, g, width, c0, p, in_map, t, sn, sc, sp, BC, ACC
        )
        tl.store(y_ptr + n * sn + c[:, None] * sc + p[None, :] * sp, (x * gate).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gate_reduce_kernel(
    g_ptr,
    x_ptr,
    t_ptr,
    beta_ptr,
    grad_t_ptr,
    beta_part_ptr,
    C,
    P,
    G,
    sn,
    sc,
    sp,
    gn,
    gc,
    gp,
    beta_stride,
    BC: tl.constexpr,
    BP: tl.constexpr,
    ACC: tl.constexpr,
    WANT_BETA: tl.constexpr,
):
    """grad_T[n, g, p] = -sum_c beta_c q and, per program, sum_p q (x - T) per channel."""
    ng, n, g, width, p, in_map, t = _group_block(t_ptr, C, P, G, BP, ACC)
    grad_t = tl.zeros([BP], ACC)
    row = (n * tl.num_programs(1) + tl.program_id(1)) * C
    for c0 in range(0, width, BC):
        c, in_group, mask, x, beta, gate = _gate_tile(
            x_ptr, beta_ptr, beta_stride, n, g, width, c0, p, in_map, t, sn, sc, sp, BC, ACC
        )
        _, q = _logit_grad(g_ptr, n, c, p, mask, x, gate, gn, gc, gp, ACC)
        grad_t -= tl.sum(beta[:, None] * q, axis=0)
        if WANT_BETA:
            tl.store(beta_part_ptr + row + c, tl.sum(q * (x - t[None, :]), axis=1), mask=in_group)
    tl.store(grad_t_ptr + ng * P + p, grad_t.to(grad_t_ptr.dtype.element_ty), mask=in_map)


@triton.jit
def input_grad_kernel(
    g_ptr,
    x_ptr,
    t_ptr,
    beta_ptr,
    pooled_ptr,
    ties_ptr,
    grad_pooled_ptr,
    out_ptr,
    C,
    P,
    G,
    sn,
    sc,
    sp,
    gn,
    gc,
    gp,
    beta_stride,
    BC: tl.constexpr,
    BP: tl.constexpr,
    ACC: tl.constexpr,
):
    """d/dx = g s + beta q + grad_mean / C + [x is the max] grad_max / ties (a tie splits
    the max's gradient evenly, as amax's backward does); out has x's strides."""
    _, n, g, width, p, in_map, t = _group_block(t_ptr, C, P, G, BP, ACC)
    best = tl.load(pooled_ptr + n * 2 * P + P + p, mask=in_map, other=0.0).to(ACC)
    grad_mean = tl.load(grad_pooled_ptr + n * 2 * P + p, mask=in_map, other=0.0).to(ACC) / C
    ties = tl.load(ties_ptr + n * P + p, mask=in_map, other=1).to(ACC)
    grad_max = tl.load(grad_pooled_ptr + n * 2 * P + P + p, mask=in_map, other=0.0).to(ACC) / ties
    for c0 in range(0, width, BC):
        c, _, mask, x, beta, gate = _gate_tile(
            x_ptr, beta_ptr, beta_stride, n, g, width, c0, p, in_map, t, sn, sc, sp, BC, ACC
        )
        grad, q = _logit_grad(g_ptr, n, c, p, mask, x, gate, gn, gc, gp, ACC)
        result = grad * gate + beta[:, None] * q + grad_mean[None, :]
        result += tl.where(x == best[None, :], grad_max[None, :], 0.0)
        tl.store(out_ptr + n * sn + c[:, None] * sc + p[None, :] * sp, result.to(out_ptr.dtype.element_ty), mask=mask)
