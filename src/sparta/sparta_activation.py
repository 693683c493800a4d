"""Sparta: a spatially attentive, input-dependent activation that extends ReLU.

    Sparta(X)[n,c,i,j] = X * sigmoid(beta * (X - T(X)[n,g(c),i,j])),   T = phi(X)

Guo et al., "Sparta: Spatially Attentive and Adversarially Robust Activation",
arXiv:2105.08269. The threshold map T is predicted by a small attention network `phi`;
its last layer starts at zero, so a fresh Sparta is exactly Swish with slope beta0.

One threshold map serves C/G channels, so the gradient of the pooled phi's weights is a
sum over C/G times as many terms as a convolution bias's: under SGD, phi would move the
threshold of every channel at once, C/G times as far per step as a bias moves one
channel's. In PGD adversarial training from the first step that is enough to close every
gate of a layer within a few steps and hold the network at chance
(results/trainability.md), so phi's weight gradients are scaled by G/C (`phi_grad_scale`):
the function, its input gradient and every exported or frozen phi are unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sparta.errors import SpartaError
from sparta.registry import Registry
from sparta.site import SITE_PATHS, path_label, run_site, site_path
from sparta.site.reference import channel_pool, pooled_phi, same_conv


def scale_gradient(t: torch.Tensor, scale: float) -> torch.Tensor:
    """t itself (bit for bit) in the forward pass; its gradient times `scale` in the backward."""
    if scale == 1.0 or not t.requires_grad:
        return t
    frozen = t.detach()
    return frozen + (t - frozen) * scale


PHIS: Registry[type[nn.Module]] = Registry("phi kind")
# The phis that never see the channel count: one trained phi fits a site of any width.
CHANNEL_AGNOSTIC_PHIS = ("pooled", "constant")


@PHIS.register("pooled")
class PooledPhi(nn.Module):
    """Channel mean and max (2 maps) -> conv k x k -> ReLU -> conv k x k -> G maps.

    It never sees the channel count, so one trained phi fits any layer of any CNN.
    """

    def __init__(self, channels: int, kernel_size: int = 3, hidden: int = 8, groups: int = 1) -> None:
        super().__init__()
        del channels  # channel-agnostic by construction
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(2, hidden, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(hidden, groups, kernel_size, padding=padding)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.weights()[3])

    def for_another_site(self) -> PooledPhi:
        """The phi a further site of a share group uses: this one (it keeps no statistics)."""
        return self

    def weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """conv1's weight and bias, then conv2's: the parameters the fast paths take."""
        assert self.conv1.bias is not None and self.conv2.bias is not None  # built with biases
        return self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias

    def threshold_map(self, x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        """The G threshold maps of x, from `weights` (as `weights()` gives them, maybe gradient-scaled)."""
        return pooled_phi(channel_pool(x), *weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.threshold_map(x, *self.weights())


@PHIS.register("constant")
class ConstantPhi(nn.Module):
    """T = one learned number per threshold group, the same at every position and for every
    input: Sparta without its spatial attention, x * sigmoid(beta * (x - t)).

    The control that says what the attention adds (`sparta ablate --vary phi=constant`). It
    is the pooled phi with both convolutions' weights at zero, so its t gets the pooled
    phi's gradient scale (one t serves C/G channels).
    """

    def __init__(self, channels: int, kernel_size: int = 3, hidden: int = 8, groups: int = 1) -> None:
        super().__init__()
        del channels, kernel_size, hidden  # no attention network
        self.t = nn.Parameter(torch.zeros(groups))  # T = 0: Sparta starts as Swish, as with every phi

    def for_another_site(self) -> ConstantPhi:
        """The phi a further site of a share group uses: this one."""
        return self

    def weights(self) -> tuple[torch.Tensor]:
        """t alone: what `Sparta.phi_weights` scales, as it does the pooled phi's."""
        return (self.t,)

    def threshold_map(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """t as G maps of x's batch and size (the shape the pooled phi gives)."""
        return t.to(x.dtype).view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.threshold_map(x, self.t)


@PHIS.register("depthwise")
class DepthwisePhi(nn.Module):
    """T = BN(depthwise k x k conv(X)): one threshold map per channel (FReLU-like)."""

    def __init__(self, channels: int, kernel_size: int = 3, hidden: int = 8, groups: int = 1) -> None:
        super().__init__()
        del hidden, groups  # one map per channel
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.norm.weight)  # T = 0 at the start: Sparta starts as Swish

    def for_another_site(self) -> DepthwisePhi:
        """The phi a further site of a share group uses: this one's convolution and BatchNorm
        scale and shift (the same Parameters), with normalisation statistics of its own.

        Sites of one stage see different inputs; one set of running statistics for all of
        them would blend their distributions, and eval mode would normalise every site
        with the blend.
        """
        twin = DepthwisePhi(self.conv.in_channels, kernel_size=self.conv.kernel_size[0])
        twin.conv = self.conv
        twin.norm.weight, twin.norm.bias = self.norm.weight, self.norm.bias
        twin.norm.load_state_dict(self.norm.state_dict())  # statistics start as this site's
        return twin.to(self.norm.weight.device).train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(same_conv(x, self.conv.weight, groups=self.conv.groups))


class Sparta(nn.Module):
    """Spatially attentive ReLU: x * sigmoid(beta * (x - phi(x))).

    Args:
        channels: channel count of the input (used by per-channel beta and depthwise phi).
        phi: attention network kind, "pooled" (channel-agnostic), "depthwise" (one map per
            channel) or "constant" (no attention: one learned threshold per group, the control).
        kernel_size: k of phi's convolutions.
        hidden: width h of the pooled phi.
        groups: G threshold maps, each shared by C/G consecutive channels.
        beta0: initial sharpness; larger starts closer to ReLU.
        per_channel_beta: one beta per channel instead of a scalar.
        fused: how a pooled site runs (`sparta.site.site_path`): None (default) picks the
            fastest measured path per device (on CPU the fused autograd function of
            `sparta.site.fused`, native where `sparta.site.native` builds its library;
            on CUDA the plain path); True asks for the Triton site on CUDA as well;
            False keeps the plain reference, which is also the only one that can be
            differentiated twice; "plain", "fused", "compiled" or "triton" names a path
            outright (the compiled one on CPU, and the Triton one under
            TRITON_INTERPRET=1, are for testing them there).
        phi_grad_scale: factor on the gradient of the pooled (or constant) phi's weights; None (default)
            is G/C, one over the channels a threshold map serves, so that phi steps as far
            as one channel's bias would (see the module docstring); 1.0 gives the
            unscaled gradient. Values, input gradients and saved weights do not depend on it.
    """

    def __init__(
        self,
        channels: int,
        phi: str = "pooled",
        kernel_size: int = 3,
        hidden: int = 8,
        groups: int = 1,
        beta0: float = 4.0,
        per_channel_beta: bool = False,
        fused: bool | str | None = None,
        phi_grad_scale: float | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise SpartaError(f"Sparta needs a positive channel count, got {channels}")
        if beta0 <= 0:
            raise SpartaError(f"Sparta beta0 must be > 0, got {beta0}")
        if hidden < 1:
            raise SpartaError(f"Sparta hidden must be >= 1 (phi's width), got {hidden}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise SpartaError(f"Sparta kernel_size must be odd and positive, got {kernel_size}")
        if groups < 1 or channels % groups:
            raise SpartaError(f"Sparta groups={groups} must divide channels={channels}")
        if phi_grad_scale is not None and not (
            isinstance(phi_grad_scale, int | float)
            and not isinstance(phi_grad_scale, bool)
            and math.isfinite(phi_grad_scale)
            and phi_grad_scale > 0
        ):
            raise SpartaError(f"Sparta phi_grad_scale must be a finite number > 0, got {phi_grad_scale!r}")
        self.channels = channels
        self.groups = groups
        self.phi_grad_scale = None if phi_grad_scale is None else float(phi_grad_scale)
        self.phi_kind = PHIS.canonical(phi)
        if isinstance(fused, str) and fused not in SITE_PATHS:
            raise SpartaError(f"Sparta fused must be true, false or one of {', '.join(SITE_PATHS)}; got '{fused}'")
        if fused and fused != "plain" and self.phi_kind != "pooled":
            raise SpartaError(f"Sparta fused={fused} needs phi='pooled', got phi='{phi}'")
        self.fused = fused
        self.frozen = False  # see freeze()
        self.phi = PHIS.get(phi)(channels, kernel_size=kernel_size, hidden=hidden, groups=groups)
        beta_shape = (channels,) if per_channel_beta else ()
        # Stored as a log so that beta stays positive under any optimizer step.
        self.log_beta = nn.Parameter(torch.full(beta_shape, math.log(beta0)))

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp()

    def freeze(self) -> None:
        """Fix phi and beta: no gradients, and phi's BatchNorm statistics stop moving too."""
        self.log_beta.requires_grad_(False)
        self.phi.requires_grad_(False)
        self.frozen = True
        self.phi.eval()

    def train(self, mode: bool = True) -> Sparta:
        """nn.Module.train, except that a frozen phi stays in eval mode (its statistics fixed)."""
        super().train(mode)
        if self.frozen:
            self.phi.eval()
        return self

    def phi_weights(self, channels: int | None = None) -> tuple[torch.Tensor, ...]:
        """The weights of a phi whose maps serve C/G channels (pooled, constant) as the forward
        pass on `channels` channels (default: the site's) uses them: their gradient scaled by
        `phi_grad_scale` (None: G / channels)."""
        assert isinstance(self.phi, PooledPhi | ConstantPhi)  # the phis with a map per group
        scale = self.groups / (channels or self.channels) if self.phi_grad_scale is None else self.phi_grad_scale
        return tuple(scale_gradient(w, scale) for w in self.phi.weights())

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """T(X) broadcast to X's shape (one map per channel)."""
        if isinstance(self.phi, PooledPhi | ConstantPhi):  # maps that serve C/G channels: scaled gradient
            t = self.phi.threshold_map(x, *self.phi_weights(x.shape[1]))
        else:  # depthwise: one map per channel, no scale needed
            t = self.phi(x)
        if t.shape[1] != x.shape[1]:
            t = t.repeat_interleave(x.shape[1] // t.shape[1], dim=1) if t.shape[1] > 1 else t
        return t

    def site_path(self, x: torch.Tensor) -> str:
        """The implementation this site runs on a 4-D x (`sparta.site.site_path`); a
        depthwise phi has only the plain one."""
        return site_path(self.fused, x) if self.phi_kind == "pooled" else "plain"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise SpartaError(f"Sparta takes floating-point input, got dtype {x.dtype}")
        own = self.log_beta.dtype
        if x.dtype != own and not torch.is_autocast_enabled(x.device.type):
            # e.g. a bf16 map outside autocast: computed in the wider dtype, returned in x's
            return self.forward(x.to(torch.promote_types(x.dtype, own))).to(x.dtype)
        flat = x.dim() == 2  # after a Linear layer: features as channels on a 1 x 1 map
        if flat:
            x = x[:, :, None, None]
        if x.dim() != 4 or x.shape[1] % self.groups:
            raise SpartaError(f"Sparta expects N x C x H x W (or N x C) input, got shape {tuple(x.shape)}")
        path = self.site_path(x)
        if path != "plain":
            y = run_site(path, x, *self.phi_weights(x.shape[1]), self.log_beta)
            return y.flatten(1) if flat else y
        beta = self.beta.to(x.dtype)
        if beta.dim():
            beta = beta.view(1, -1, 1, 1)
        y = x * torch.sigmoid(beta * (x - self.threshold(x)))
        return y.flatten(1) if flat else y

    def extra_repr(self) -> str:
        scale = "G/C" if self.phi_grad_scale is None else f"{self.phi_grad_scale:g}"
        return f"channels={self.channels}, phi={self.phi_kind}, groups={self.groups}, phi_grad_scale={scale}"


def site_paths(model: nn.Module, device: torch.device) -> str | None:
    """Which implementation the model's Sparta sites run on `device` in the current autocast
    state (e.g. "fused-native"; several joined by ","), or None without Sparta sites:
    recorded with each checkpoint, so a result says which code computed it."""
    paths = set()
    for module in model.modules():
        if isinstance(module, Sparta):
            probe = torch.empty(1, module.channels, 1, 1, device=device, dtype=module.log_beta.dtype)
            paths.add(path_label(module.site_path(probe), probe))
    return ",".join(sorted(paths)) or None
