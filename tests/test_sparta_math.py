"""The special cases of Sparta (docs/design.md section 1), each able to fail."""

import math

import pytest
import torch
import torch.nn.functional as F

from sparta import Sparta, SpartaError


def _with_threshold(module: Sparta, value: float) -> Sparta:
    """Make phi output a constant map: zero weights, bias = value."""
    with torch.no_grad():
        for p in module.phi.parameters():
            p.zero_()
        module.phi.conv2.bias.fill_(value)
    return module


@pytest.mark.parametrize("beta0", [0.5, 1.0, 4.0])
def test_fresh_sparta_is_swish_beta(beta0):
    torch.manual_seed(0)
    act = Sparta(8, beta0=beta0)
    x = torch.randn(3, 8, 5, 5) * 3
    expected = x * torch.sigmoid(beta0 * x)
    assert torch.allclose(act(x), expected, atol=1e-6)


def test_beta_one_is_silu():
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(Sparta(4, beta0=1.0)(x), F.silu(x), atol=1e-6)


def test_zero_threshold_large_beta_is_relu():
    act = Sparta(8, beta0=1e4)
    x = torch.randn(2, 8, 7, 7)
    x = x[x.abs() > 1e-2].view(-1)[: 2 * 8 * 4 * 4].view(2, 8, 4, 4)
    assert torch.allclose(act(x), F.relu(x), atol=1e-6)


def test_large_beta_is_shifted_step():
    act = _with_threshold(Sparta(4, beta0=1e4), 0.5)
    x = torch.tensor([-1.0, 0.2, 0.45, 0.55, 0.9, 2.0]).view(1, 1, 2, 3).repeat(1, 4, 1, 1)
    assert torch.allclose(act(x), x * (x > 0.5), atol=1e-6)


def test_threshold_depends_on_input_and_position():
    torch.manual_seed(1)
    act = Sparta(4)
    torch.nn.init.normal_(act.phi.conv2.weight)
    a, b = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    ta, tb = act.threshold(a), act.threshold(b)
    assert not torch.allclose(ta, tb)
    assert ta[0, 0].std() > 0  # varies over space


def test_gradcheck_input_and_parameters():
    torch.manual_seed(0)
    # phi_grad_scale=1.0: the true derivative (by default phi's is scaled on purpose, tests/test_phi_step.py)
    act = Sparta(3, hidden=2, per_channel_beta=True, phi_grad_scale=1.0).double()
    torch.nn.init.normal_(act.phi.conv2.weight, std=0.5)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(act, (x,), eps=1e-6, atol=1e-5)
    names = ["log_beta", "phi.conv1.weight", "phi.conv2.weight", "phi.conv2.bias"]
    named = dict(act.named_parameters())

    def as_function(*values):
        return torch.func.functional_call(act, dict(zip(names, values)), (x.detach(),))

    values = tuple(named[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(as_function, values, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3, 16, 257])
def test_pooled_phi_fits_any_channel_count(channels):
    act = Sparta(16)
    x = torch.randn(2, channels, 5, 5)
    assert act(x).shape == x.shape  # the same phi works whatever the channel count


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("phi", ["pooled", "depthwise", "constant"])
def test_shape_and_dtype_preserved(dtype, phi):
    act = Sparta(6, phi=phi).to(dtype)
    x = torch.randn(2, 6, 9, 7, dtype=dtype)
    y = act(x)
    assert y.shape == x.shape and y.dtype == dtype


def test_flat_input_after_linear():
    act = Sparta(10)
    x = torch.randn(4, 10)
    assert act(x).shape == (4, 10)


def test_groups_give_one_map_per_group():
    act = Sparta(8, groups=4)
    torch.nn.init.normal_(act.phi.conv2.weight)
    t = act.threshold(torch.randn(1, 8, 5, 5))
    assert t.shape == (1, 8, 5, 5)
    assert torch.equal(t[:, 0], t[:, 1]) and not torch.equal(t[:, 1], t[:, 2])


def test_depthwise_starts_as_swish_and_is_per_channel():
    act = Sparta(4, phi="depthwise", beta0=2.0)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(act(x), x * torch.sigmoid(2.0 * x), atol=1e-6)
    assert act.phi.conv.weight.shape == (4, 1, 3, 3)


def test_beta_stays_positive_and_is_stored_as_log():
    act = Sparta(4, beta0=4.0)
    assert math.isclose(act.log_beta.item(), math.log(4.0), rel_tol=1e-6)
    with torch.no_grad():
        act.log_beta.fill_(-50.0)
    assert act.beta.item() > 0


def test_per_channel_parameters_are_flat_vectors():
    act = Sparta(5, per_channel_beta=True)
    assert act.log_beta.shape == (5,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta0": 0.0}, "beta0"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"groups": 3}, "groups"),
        ({"phi": "nope"}, "unknown phi kind"),
    ],
)
def test_bad_options_are_clear(kwargs, message):
    with pytest.raises(SpartaError, match=message):
        Sparta(8, **kwargs)


def test_bad_input_shape_is_clear():
    with pytest.raises(SpartaError, match="N x C x H x W"):
        Sparta(4)(torch.randn(2, 4, 3))


def test_constant_phi_is_the_pooled_phi_with_its_weights_at_zero():
    """phi="constant" (no attention) computes what a pooled phi with zero convolution
    weights does, its threshold moving under the same gradient scale as that bias."""
    torch.manual_seed(0)
    pooled = _with_threshold(Sparta(6, beta0=3.0, fused="plain").double(), 0.3)
    constant = Sparta(6, phi="constant", beta0=3.0).double()
    with torch.no_grad():
        constant.phi.t.fill_(0.3)
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    assert torch.allclose(constant(x), pooled(x), rtol=0, atol=1e-12)
    constant(x).square().sum().backward()
    pooled(x).square().sum().backward()
    assert torch.allclose(constant.phi.t.grad, pooled.phi.conv2.bias.grad, rtol=1e-10)
    assert torch.allclose(constant.log_beta.grad, pooled.log_beta.grad, rtol=1e-10)


def test_constant_phi_ignores_the_input_and_keeps_a_threshold_per_group():
    act = Sparta(8, phi="constant", groups=2)
    with torch.no_grad():
        act.phi.t.copy_(torch.tensor([0.5, -0.5]))
    a, b = torch.randn(2, 8, 4, 4), 3 * torch.randn(2, 8, 4, 4)
    assert torch.equal(act.threshold(a), act.threshold(b))
    expected = a * torch.sigmoid(4.0 * (a - torch.tensor([0.5] * 4 + [-0.5] * 4).view(1, 8, 1, 1)))
    assert torch.allclose(act(a), expected, atol=1e-6)
    assert [name for name, _ in act.named_parameters()] == ["log_beta", "phi.t"]
    with pytest.raises(SpartaError, match="needs phi='pooled'"):
        Sparta(8, phi="constant", fused="triton")
