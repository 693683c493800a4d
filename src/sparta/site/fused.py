"""A Sparta site (pooled phi) as one autograd function: the CPU's fast path.

Autograd runs the plain site as about a dozen full-size passes forward and twice as many
backward, and keeps each intermediate. This function computes the same values and
first-order gradients (tests/test_fused_site.py checks them against the plain
reference) in fewer passes:

- forward: channel mean and channel max (`amax`: with indices `max` costs 20x more on
  CPU), the gate computed in place, and only x, the sigmoid s and the threshold T kept;
- backward: q = g * x * s * (1 - s) in two passes (`sigmoid_backward`) serves the input,
  the threshold and beta; the max's gradient is routed by `x - max == 0` with one
  `threshold_backward` instead of a boolean mask (amax's tie rule kept: a tie splits
  the gradient evenly); beta's gradient reuses q and never forms x - T again;
- weight gradients an attack does not ask for are not computed (as the engine skips
  them for built-in operations);
- phi's two tiny convolutions run on the pooled 2-channel map in channels_last, where
  oneDNN's kernels for 2 and 8 channels are 2-3x faster than in NCHW.

Where the native library of `sparta.site.native` can be built (a C compiler is present),
`NativeSpartaSite` runs the whole site there instead: two passes over the map each way
and phi's convolutions on zero-bordered planes; this function, in torch operations, is
its stand-in. Both are checked against the plain reference.

Neither is twice differentiable: backward with `create_graph=True` raises a SpartaError
(never a silently missing term); Sparta(fused=False) is.
Paper: arXiv:2105.08269.
"""

from __future__ import annotations

import torch
from torch.autograd.function import FunctionCtx

from sparta.errors import SpartaError
from sparta.site import native
from sparta.site.reference import channel_pool, pooled_phi


def _phi(pooled: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """The pooled phi, in channels_last on a 2-D map (oneDNN's faster layout for 2 and 8 channels)."""
    if pooled.shape[-2:] != (1, 1):
        pooled = pooled.contiguous(memory_format=torch.channels_last)
    return pooled_phi(pooled, *weights)


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """N x C x H x W as N x G x C/G x H x W, so that one threshold map meets its channels."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w)


def _beta_view(beta: torch.Tensor, x5: torch.Tensor) -> torch.Tensor:
    """beta shaped to multiply the grouped map: a scalar, or one per channel."""
    return beta.view(1, x5.shape[1], x5.shape[2], 1, 1) if beta.dim() else beta


def engine_needs(parameter: torch.Tensor) -> bool:
    """Whether the running backward wants this parameter's gradient.

    An attack asks for d loss / d input only (`torch.autograd.grad(loss, x)`), and the
    engine then skips the weight gradients of built-in operations; a custom function
    has to ask. Where torch cannot say, the gradient is computed.
    """
    try:
        from torch.autograd.graph import _get_grad_fn_or_grad_acc

        return bool(torch._C._will_engine_execute_node(_get_grad_fn_or_grad_acc(parameter)))
    except (AttributeError, ImportError, RuntimeError):
        return True


def refuse_double_backward() -> None:
    """create_graph=True: a gradient penalty would silently lose this site's term."""
    if torch.is_grad_enabled():
        raise SpartaError(
            "Sparta's fused site can be differentiated once; for create_graph=True "
            "(double backward) build Sparta with fused=False"
        )


def _below_zero(dtype: torch.dtype) -> float:
    """The largest threshold under which every nonzero `x - max` falls: minus the smallest
    subnormal, so that only exact maxima (difference 0) pass."""
    info = torch.finfo(dtype)
    return -info.smallest_normal * info.eps


class FusedSpartaSite(torch.autograd.Function):
    """y = x * sigmoid(beta * (x - phi([mean_c x, max_c x]))) for x: N x C x H x W."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        log_beta: torch.Tensor,
    ) -> torch.Tensor:
        x = x.contiguous()
        pooled = channel_pool(x)
        maximum = pooled[:, 1:]  # the channel max, kept for the max's gradient
        with torch.enable_grad():  # phi is tiny: autograd keeps its graph for backward
            pooled_leaf = pooled.detach().requires_grad_(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
            threshold_graph = _phi(pooled_leaf, w1, b1, w2, b2)
        threshold = threshold_graph.detach().contiguous()
        beta = log_beta.detach().exp().to(x.dtype)
        x5 = _grouped(x, threshold.shape[1])
        gate = _logit(x5, threshold.unsqueeze(2), beta).sigmoid_()
        ctx.save_for_backward(x, maximum, threshold, gate, beta)
        ctx.phi_graph = (pooled_leaf, threshold_graph, (w1, b1, w2, b2, log_beta))  # type: ignore[attr-defined]
        return torch.mul(x5, gate).view_as(x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Gradients for x and the parameters the running backward wants; None for the rest."""
        refuse_double_backward()
        x, maximum, threshold, gate, beta = ctx.saved_tensors  # type: ignore[attr-defined]
        pooled_leaf, threshold_graph, parameters = ctx.phi_graph  # type: ignore[attr-defined]
        needs_x, *needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        wanted = [needed and engine_needs(parameter) for needed, parameter in zip(needs, parameters)]
        x5 = _grouped(x, threshold.shape[1])
        grad5 = grad.contiguous().view_as(x5)
        q = torch.mul(grad5, x5)  # then g x s (1 - s): the gradient at the gate's logit over beta
        torch.ops.aten.sigmoid_backward.grad_input(q, gate, grad_input=q)
        summed = None if beta.dim() else q.sum(dim=2)  # a scalar beta's and T's gradients share it
        grad_beta = _beta_backward(q, x5, threshold, beta, summed) if wanted[4] else None
        grad_threshold = (q * _beta_view(beta, x5)).sum(dim=2).neg_() if summed is None else summed.mul_(-beta)
        phi_inputs = [pooled_leaf] * needs_x + [p for p, w in zip(parameters[:4], wanted) if w]
        # retain_graph: the outer graph may be run backward again (AutoAttack's FAB does so);
        # phi's small graph is freed with this node.
        phi_grads = (
            list(torch.autograd.grad(threshold_graph, phi_inputs, grad_threshold, retain_graph=True))
            if phi_inputs
            else []
        )
        grad_x = _input_backward(x5, grad5, gate, q, beta, maximum, phi_grads.pop(0)) if needs_x else None
        weight_grads = [phi_grads.pop(0) if w else None for w in wanted[:4]]
        return (grad_x, *weight_grads, grad_beta)


def _logit(x5: torch.Tensor, threshold5: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """beta * (x - T) as a new tensor; with a scalar beta in one pass, as -beta T + beta x."""
    if beta.dim():
        return torch.sub(x5, threshold5).mul_(_beta_view(beta, x5))
    value = float(beta)
    return torch.add(threshold5 * -value, x5, alpha=value)


def _beta_backward(
    q: torch.Tensor, x5: torch.Tensor, threshold: torch.Tensor, beta: torch.Tensor, summed: torch.Tensor | None
) -> torch.Tensor:
    """d/d log_beta = beta * sum q * (x - T), without forming x - T: sum q x - sum (sum_c q) T.

    `summed` is sum_c q, given for a scalar beta."""
    if summed is not None:
        return (torch.dot(q.flatten(), x5.flatten()) - torch.dot(summed.flatten(), threshold.flatten())) * beta
    per_channel = torch.einsum("ngchw,ngchw->gc", q, x5) - torch.einsum("ngchw,nghw->gc", q, threshold)
    return per_channel.flatten() * beta


def _input_backward(
    x5: torch.Tensor,
    grad5: torch.Tensor,
    gate: torch.Tensor,
    q: torch.Tensor,
    beta: torch.Tensor,
    maximum: torch.Tensor,
    grad_pooled: torch.Tensor,
) -> torch.Tensor:
    """d/dx = g s + beta q, plus the channel mean's and the channel max's share.

    A tie for the max splits its gradient evenly, as amax's backward does.
    """
    grad_mean, grad_max = grad_pooled.contiguous().unbind(dim=1)
    channels = x5.shape[1] * x5.shape[2]
    grad_x = torch.addcmul((grad_mean / channels)[:, None, None], grad5, gate)
    if beta.dim():
        grad_x.addcmul_(q, _beta_view(beta, x5))
    else:
        grad_x.add_(q, alpha=float(beta))
    grad_x = grad_x.view(x5.shape[0], channels, *x5.shape[3:])
    x = x5.view_as(grad_x)
    at_max = torch.ops.aten.threshold_backward(
        torch.ones_like(maximum).expand_as(x), torch.sub(x, maximum), _below_zero(x.dtype)
    )
    ties = at_max.sum(dim=1, keepdim=True)
    return grad_x.addcmul_(at_max, grad_max.unsqueeze(1) / ties)


class NativeSpartaSite(torch.autograd.Function):
    """`FusedSpartaSite` computed by the native library (`sparta.site.native`), float32/64 on CPU."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        log_beta: torch.Tensor,
    ) -> torch.Tensor:
        x = x.contiguous()
        pooled, ties = native.pool(x)
        threshold, hidden = native.phi(pooled, w1, b1, w2, b2)
        beta = log_beta.detach().exp().to(x.dtype)
        ctx.save_for_backward(x, pooled, ties, threshold, hidden, beta, w1, w2, log_beta)
        return native.gate(x, threshold, beta)  # the gate is recomputed in backward

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """As `FusedSpartaSite.backward`, in the native passes."""
        refuse_double_backward()
        x, pooled, ties, threshold, hidden, beta, w1, w2, log_beta = ctx.saved_tensors  # type: ignore[attr-defined]
        needs_x, *needs_weights, needs_beta = ctx.needs_input_grad  # type: ignore[attr-defined]
        # phi's four gradients come from one pass; the engine is asked about its weights
        want_weights = any(needs_weights) and any(engine_needs(w) for w in (w1, w2))
        grad_x, grad_threshold, slope = native.gate_backward(grad.contiguous(), x, threshold, beta)
        weight_grads: list[torch.Tensor | None] = [None] * 4
        if needs_x or want_weights:
            grad_pooled, computed = native.phi_backward(
                pooled, hidden, w1, w2, grad_threshold, input_grad=needs_x, weight_grads=want_weights
            )
            weight_grads = [g if needed else None for g, needed in zip(computed or weight_grads, needs_weights)]
            if grad_pooled is not None:
                grad_x = native.pool_backward(x, pooled, ties, grad_pooled, grad_x)
        grad_beta = None
        if needs_beta and engine_needs(log_beta):
            grad_beta = (slope.sum(dim=0) if beta.dim() else slope.sum()).to(log_beta.dtype) * beta
        return (grad_x if needs_x else None, *weight_grads, grad_beta)


def fused_forward(x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
    """`Sparta.forward` (pooled phi) for a 4-D input, parameters (w1, b1, w2, b2, log_beta):
    natively where the library is built, else in torch operations."""
    function = NativeSpartaSite if native.available(x) else FusedSpartaSite
    return function.apply(x, *parameters)
