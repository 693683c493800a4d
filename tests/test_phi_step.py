"""How far one optimiser step moves Sparta's threshold (results/trainability.md).

One threshold map serves every channel of its group, so the unscaled gradient of the
pooled phi is a sum over C/G channels: a push that every channel agrees on (the one that
closes all gates, which adversarial training gives early) moved T C/G times as far as it
moves one channel's bias. `phi_grad_scale` (default G/C) removes that factor and nothing
else: values, input gradients and the weights saved stay the same.
"""

import copy

import pytest
import torch
from torch import nn

from sparta import Sparta, SpartaError


class ChannelBias(nn.Module):
    """x + b, one b per channel: the parameter a ReLU network moves a channel's threshold with."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1)


def _steps(channels: int, fused: str, **options) -> tuple[float, float]:
    """One SGD step on the mean output of bias -> Sparta over positive features: every
    channel agrees that its gate should close. Returns how far the step moved T (its mean
    over the batch) and the farthest it moved one channel's bias."""
    torch.manual_seed(0)
    site = Sparta(channels, fused=fused, **options)
    nn.init.normal_(site.phi.conv2.weight, std=0.1)
    stack = nn.Sequential(ChannelBias(channels), site)
    x = torch.rand(8, channels, 10, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        threshold_before = site.threshold(x).mean()
    stack(x).mean().backward()
    torch.optim.SGD(stack.parameters(), lr=0.1).step()
    with torch.no_grad():
        moved_threshold = float((site.threshold(stack[0](x)).mean() - threshold_before).abs())
    return moved_threshold, float(stack[0].bias.detach().abs().max())


@pytest.mark.parametrize("fused", ["plain", "fused"])
@pytest.mark.parametrize("channels", [32, 200])
def test_a_coherent_push_moves_the_threshold_about_as_far_as_one_channels_bias(channels, fused):
    moved_threshold, moved_bias = _steps(channels, fused)
    assert moved_bias > 0
    assert moved_threshold < 2 * moved_bias, f"T moved {moved_threshold:.3g}, one channel's bias {moved_bias:.3g}"
    # unscaled, phi's gradient is the sum over the channels: it moved T about C times as
    # far, far past any one channel's bias (what held PGD-AT at chance)
    unscaled, _ = _steps(channels, fused, phi_grad_scale=1.0)
    assert unscaled > channels / 2 * moved_threshold
    assert unscaled > 4 * moved_bias


@pytest.mark.parametrize("fused", ["plain", "fused"])
@pytest.mark.parametrize("options", [{}, {"groups": 4}, {"per_channel_beta": True}])
def test_the_scale_changes_only_phis_weight_gradients(options, fused, random_sparta):
    scaled = random_sparta(16, dtype=torch.float64, fused=fused, **options)
    unscaled = copy.deepcopy(scaled)
    unscaled.phi_grad_scale = 1.0
    x = torch.randn(3, 16, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    results = []
    for module in (scaled, unscaled):
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        (y * torch.cos(y)).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in module.named_parameters()}))
    (y_s, gx_s, g_s), (y_u, gx_u, g_u) = results
    assert torch.equal(y_s, y_u)  # bit for bit: the function does not depend on the scale
    torch.testing.assert_close(gx_s, gx_u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_s["log_beta"], g_u["log_beta"], rtol=1e-12, atol=1e-12)
    factor = scaled.groups / 16
    for name in ("phi.conv1.weight", "phi.conv1.bias", "phi.conv2.weight", "phi.conv2.bias"):
        assert g_u[name].abs().sum() > 0, name
        torch.testing.assert_close(g_s[name], g_u[name] * factor, rtol=1e-10, atol=1e-14, msg=name)


def test_an_attack_gradient_does_not_touch_phis_weights(random_sparta):
    """Input gradients alone (every attack step) still skip phi's weight gradients."""
    site = random_sparta(8)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(site(x).sum(), x)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in site.parameters())


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), "abc", True])
def test_a_bad_scale_is_refused(value):
    with pytest.raises(SpartaError, match="phi_grad_scale"):
        Sparta(8, phi_grad_scale=value)


def test_the_default_scale_is_one_over_the_channels_a_map_serves():
    """A pooled phi is channel-agnostic: the scale follows the input it pools (G / C)."""
    site = Sparta(16, groups=2)
    for channels, expected in ((16, 2 / 16), (64, 2 / 64)):
        site.zero_grad(set_to_none=True)
        site.phi_weights(channels)[3].sum().backward()  # conv2's bias: d/db of sum(b) is 1 per map
        torch.testing.assert_close(site.phi.conv2.bias.grad, torch.full((2,), expected))
    assert "phi_grad_scale=G/C" in repr(site)
    assert "phi_grad_scale=1" in repr(Sparta(16, phi_grad_scale=1.0))
