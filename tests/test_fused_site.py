"""The fused CPU site computes the plain Sparta: values and first-order gradients.

Every comparison runs the same module twice, once with fused=False (the reference
`Sparta.forward`) and once through `FusedSpartaSite`; every test runs with the native
passes (`sparta.site.native`) and with the torch operations that stand in for them.
"""

import pytest
import torch

from sparta import Sparta, SpartaError
from sparta.site import native as native_site
from sparta.site.fused import FusedSpartaSite, NativeSpartaSite, fused_forward


@pytest.fixture(autouse=True, params=["native", "torch-ops"])
def passes(request, monkeypatch):
    """Runs a test with the native elementwise passes and again with torch operations."""
    if request.param == "torch-ops":
        monkeypatch.setattr(native_site, "available", lambda x: False)
    elif native_site.library() is None:
        pytest.skip("no working C compiler: the native passes cannot be built")
    return request.param


def _output_and_grads(module: Sparta, x: torch.Tensor, fused: bool):
    module.fused = fused
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = module(x)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
    (y * weight).sum().backward()
    grads = {"x": x.grad, **{name: p.grad for name, p in module.named_parameters()}}
    return y.detach(), grads


def _assert_matches_plain(module: Sparta, x: torch.Tensor, tolerance: float) -> None:
    expected, expected_grads = _output_and_grads(module, x, fused=False)
    got, got_grads = _output_and_grads(module, x, fused=True)
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    assert set(got_grads) == set(expected_grads)
    for name, value in expected_grads.items():
        assert got_grads[name] is not None, name
        torch.testing.assert_close(got_grads[name], value, rtol=tolerance, atol=tolerance, msg=name)


OPTIONS = [
    dict(),
    dict(per_channel_beta=True),
    dict(groups=2),
    dict(groups=6, per_channel_beta=True),
    dict(kernel_size=5, hidden=4),
    dict(kernel_size=1, hidden=1),
]
SHAPES = [(3, 6, 7, 5), (1, 6, 1, 1), (2, 6, 2, 9), (4, 6)]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_values_and_gradients_match_the_plain_site(options, shape, dtype, tolerance, random_sparta):
    module = random_sparta(6, dtype=dtype, **options)
    _assert_matches_plain(module, torch.randn(shape, dtype=dtype) * 2, tolerance)


def test_a_tie_for_the_channel_max_splits_the_gradient_as_amax_does(random_sparta):
    module = random_sparta(4, dtype=torch.float64)
    x = torch.zeros(2, 4, 3, 3, dtype=torch.float64)
    x[:, :3] = 1.5  # three channels tie for the max everywhere
    x[1, 0, 1, 1] = 2.0  # one pixel with a single maximum
    _assert_matches_plain(module, x, 1e-10)


def test_a_saturated_gate_stays_finite(random_sparta):
    """A large beta drives beta (x - T) far past exp's range: outputs and gradients stay finite."""
    module = random_sparta(4, dtype=torch.float64, beta0=1e3)  # |beta (x - T)| up to about 1e4
    _assert_matches_plain(module, torch.randn(3, 4, 5, 5, dtype=torch.float64) * 10, 1e-8)
    module = random_sparta(4, beta0=1e6)
    x = (torch.randn(3, 4, 5, 5) * 10).requires_grad_(True)
    module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_channels_last_input_gives_the_same_result(random_sparta):
    module = random_sparta(8)
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    _assert_matches_plain(module, x, 1e-4)  # float32, as the other float32 comparisons


def test_gradcheck_in_float64(random_sparta, passes):
    module = random_sparta(3, dtype=torch.float64, hidden=2, per_channel_beta=True)
    phi = module.phi
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    inputs = tuple(
        t.detach().clone().requires_grad_(True)
        for t in (x, phi.conv1.weight, phi.conv1.bias, phi.conv2.weight, phi.conv2.bias, module.log_beta)
    )
    function = NativeSpartaSite if passes == "native" else FusedSpartaSite
    assert torch.autograd.gradcheck(function.apply, inputs, eps=1e-6, atol=1e-6)


def test_input_gradient_alone_when_the_parameters_are_frozen(random_sparta):
    """An attack on a frozen (transferred) Sparta: only d/dx is asked for, and it is right."""
    module = random_sparta(5)
    module.freeze()
    x = torch.randn(2, 5, 4, 4, requires_grad=True)
    module.fused = False
    expected = torch.autograd.grad(module(x).square().sum(), x)[0]
    module.fused = True
    got = torch.autograd.grad(module(x).square().sum(), x)[0]
    torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in module.parameters())


def test_parameter_gradients_without_an_input_gradient(random_sparta):
    module = random_sparta(5)
    x = torch.randn(2, 5, 4, 4)  # a first layer's input needs no gradient
    grads = {}
    for fused in (False, True):
        module.fused = fused
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
        grads[fused] = [p.grad.clone() for p in module.parameters()]
    for got, expected in zip(grads[True], grads[False]):
        torch.testing.assert_close(got, expected)


def test_twice_differentiating_the_fused_site_raises_and_the_plain_one_works(random_sparta):
    module = random_sparta(3)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    with pytest.raises(SpartaError, match="fused=False"):
        torch.autograd.grad(fused_forward(x, *module.phi.weights(), module.log_beta).sum(), x, create_graph=True)
    module.fused = False
    (grad,) = torch.autograd.grad(module(x).sum(), x, create_graph=True)
    grad.sum().backward()
    assert x.grad is not None


def test_backward_can_run_twice_with_retain_graph(random_sparta):
    """AutoAttack's FAB runs one graph backward more than once."""
    module = random_sparta(4)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    y = module(x).sum()
    first = torch.autograd.grad(y, x, retain_graph=True)[0]
    second = torch.autograd.grad(y, x)[0]
    torch.testing.assert_close(first, second)


def test_an_attack_gradient_leaves_the_weight_gradients_alone(monkeypatch, random_sparta, passes):
    """d loss / d x only: the site computes no phi or beta gradient (the engine skips them)."""
    module = random_sparta(4)
    weights_asked = []
    real_grad, real_phi_backward = torch.autograd.grad, native_site.phi_backward

    def counting(outputs, inputs, *args, **kwargs):  # the torch-ops site differentiates phi with it
        weights_asked.append(isinstance(inputs, (list, tuple)) and len(inputs) > 1)
        return real_grad(outputs, inputs, *args, **kwargs)

    def native_counting(*args, weight_grads, **kwargs):
        weights_asked.append(weight_grads)
        return real_phi_backward(*args, weight_grads=weight_grads, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    monkeypatch.setattr(native_site, "phi_backward", native_counting)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    module.fused = False
    expected = real_grad(module(x).square().sum(), x)[0]
    module.fused = True
    weights_asked.clear()
    got = torch.autograd.grad(module(x).square().sum(), x)[0]
    torch.testing.assert_close(got, expected)
    assert weights_asked and not any(weights_asked), "phi's weights were differentiated for an input-only gradient"
