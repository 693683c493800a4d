"""The Triton site computes the plain reference: values and every gradient, each case its kernels serve.

Without CUDA the kernels run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1); on the GPU check the same tests run them on CUDA.
"""

from __future__ import annotations

import logging

import pytest
import torch

from sparta import Sparta, SpartaError, site
from sparta.attacks import create_attack

pytestmark = pytest.mark.triton
triton_op = pytest.importorskip("sparta.site.triton_op", reason="triton is not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _pair(channels, dtype=torch.float64, **options):
    """A plain Sparta and a Triton one with the same random weights (phi's last layer is
    zero at the start, which would hide its gradients)."""
    torch.manual_seed(0)
    plain = Sparta(channels, fused=False, **options)
    torch.nn.init.normal_(plain.phi.conv2.weight, std=0.3)
    torch.nn.init.normal_(plain.phi.conv2.bias, std=0.3)
    with torch.no_grad():
        plain.log_beta.add_(0.2 * torch.randn_like(plain.log_beta))
    fast = Sparta(channels, fused="triton", **options)
    fast.load_state_dict(plain.state_dict())
    return plain.to(DEVICE, dtype), fast.to(DEVICE, dtype)


def _input(n, c, h, w, dtype=torch.float64, channels_last=False):
    x = torch.randn(n, c, h, w, dtype=dtype, device=DEVICE)
    x[0, :, 0, 0] = 0.5  # every channel ties for the max at one pixel
    x[-1, : max(1, c // 2), -1, -1] = 3.0  # and half of them at another
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _value_and_grads(module, x, weights):
    x = x.clone().requires_grad_()
    y = module(x)
    parameters = list(module.parameters())
    grads = torch.autograd.grad(y, [x, *parameters], weights)
    return y.detach(), dict(zip(["x", *(n for n, _ in module.named_parameters())], grads, strict=True))


def _assert_same(plain, fast, x, rtol, atol):
    weights = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).view_as(x)
    want, want_grads = _value_and_grads(plain, x, weights)
    got, got_grads = _value_and_grads(fast, x, weights)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    for name, value in want_grads.items():
        torch.testing.assert_close(got_grads[name], value, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


CASES = {  # name: (channels, (n, h, w), Sparta options, channels_last)
    "nchw": (6, (2, 5, 5), {}, False),
    "channels_last": (6, (2, 5, 5), {}, True),
    "groups and per-channel beta": (12, (2, 4, 3), {"groups": 3, "per_channel_beta": True}, False),
    "groups, channels_last": (40, (2, 3, 3), {"groups": 4, "per_channel_beta": True}, True),
    "1x1 map (after a Linear layer)": (8, (3, 1, 1), {}, False),
    "batch 1": (5, (1, 6, 4), {}, True),
    "5x5 phi, wide hidden": (6, (2, 7, 7), {"kernel_size": 5, "hidden": 16}, False),
}


@pytest.mark.parametrize("case", CASES)
def test_float64_values_and_every_gradient_match_the_plain_site(case):
    channels, (n, h, w), options, channels_last = CASES[case]
    plain, fast = _pair(channels, **options)
    _assert_same(plain, fast, _input(n, channels, h, w, channels_last=channels_last), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_tiles_smaller_than_the_map_walk_every_channel_and_pixel(channels_last, monkeypatch):
    """Several channel tiles and pixel blocks per program: the loops and their masks."""
    monkeypatch.setattr(triton_op, "TILE", 8)
    monkeypatch.setattr(triton_op, "PIXEL_BLOCK", 4)
    plain, fast = _pair(14, groups=2, per_channel_beta=True)
    _assert_same(plain, fast, _input(2, 14, 3, 5, channels_last=channels_last), rtol=1e-10, atol=1e-12)


def test_float32_matches_the_float64_reference_within_single_precision():
    plain, fast = _pair(16, per_channel_beta=True)
    x = _input(2, 16, 6, 6)
    weights = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).view_as(x)
    want, want_grads = _value_and_grads(plain, x, weights)
    got, got_grads = _value_and_grads(fast.float(), x.float(), weights.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    for name, value in want_grads.items():
        torch.testing.assert_close(got_grads[name].double(), value, rtol=1e-4, atol=1e-4, msg=name)


def test_bf16_under_autocast_is_as_close_to_float64_as_the_plain_site_is():
    """Inside an autocast model a site sees a convolution's bf16 output; the kernels compute in
    float32, so their error against float64 is no larger than the plain path's (bf16 throughout)."""
    reference, fast = _pair(16, per_channel_beta=True)
    plain = Sparta(16, fused=False, per_channel_beta=True).to(DEVICE)
    plain.load_state_dict(reference.state_dict())
    fast = fast.float()
    x64 = _input(2, 16, 6, 6)
    x = x64.to(torch.bfloat16)
    weights = torch.linspace(-1, 1, x.numel(), device=x.device).view_as(x).to(torch.bfloat16)
    want, want_grads = _value_and_grads(reference, x.double(), weights.double())
    errors = {}
    for name, module in (("plain", plain), ("triton", fast)):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            got, got_grads = _value_and_grads(module, x, weights)
        assert got.dtype == torch.bfloat16 and got_grads["x"].dtype == torch.bfloat16
        assert got_grads["log_beta"].dtype == torch.float32  # parameters keep their dtype
        errors[name] = max(
            (got.double() - want).abs().max().item(),
            *(
                (got_grads[k].double() - v).abs().max().item() / (1 + v.abs().max().item())
                for k, v in want_grads.items()
            ),
        )
    assert errors["triton"] < 0.1
    assert errors["triton"] <= 1.5 * errors["plain"] + 1e-3, errors


def test_an_attack_step_asks_for_no_weight_gradients(monkeypatch):
    """torch.autograd.grad(loss, x), as every attack step calls it: phi's convolution backward
    computes no weight gradients, and the input gradient is the plain site's."""
    plain, fast = _pair(6)
    masks = []
    real = triton_op._conv_backward
    monkeypatch.setattr(triton_op, "_conv_backward", lambda *a: masks.append(a[-1]) or real(*a))
    x = _input(2, 6, 5, 5).requires_grad_()
    want = torch.autograd.grad(plain(x).square().sum(), x)[0]
    got = torch.autograd.grad(fast(x).square().sum(), x)[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert masks == [[True, False, False], [True, False, False]]
    fast(x).sum().backward()  # a training step does compute them
    assert masks[-2:] == [[True, True, True], [True, True, True]]
    assert all(p.grad is not None for p in fast.parameters())


def test_a_frozen_site_computes_only_the_input_gradient(monkeypatch):
    _, fast = _pair(6)
    fast.freeze()
    masks = []
    real = triton_op._conv_backward
    monkeypatch.setattr(triton_op, "_conv_backward", lambda *a: masks.append(a[-1]) or real(*a))
    x = _input(2, 6, 5, 5).requires_grad_()
    fast(x).sum().backward()
    assert x.grad is not None and masks == [[True, False, False], [True, False, False]]
    assert all(p.grad is None for p in fast.parameters())


def test_double_backward_is_refused_not_silently_wrong():
    _, fast = _pair(6)
    x = _input(1, 6, 4, 4).requires_grad_()
    with pytest.raises(SpartaError, match="fused=False"):
        torch.autograd.grad(fast(x).sum(), x, create_graph=True)


def test_the_operator_passes_torch_library_opcheck():
    """Schema, fake (meta) implementation, autograd registration and dispatch agree."""
    _, fast = _pair(6, groups=2)
    x = _input(2, 6, 4, 4).requires_grad_()
    torch.library.opcheck(torch.ops.sparta.triton_site.default, (x, *fast.phi.weights(), fast.log_beta))


def test_torch_compile_traces_a_triton_model_without_graph_breaks():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        Sparta(8, fused="triton"),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 16),
        Sparta(16, fused="triton"),
        torch.nn.Linear(16, 10),
    ).to(DEVICE)
    for module in net.modules():
        if isinstance(module, Sparta):
            torch.nn.init.normal_(module.phi.conv2.weight, std=0.3)
    x = torch.rand(2, 1, 6, 6, device=DEVICE)
    explained = torch._dynamo.explain(net)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    grads = {}
    for name, model in (("eager", net), ("compiled", torch.compile(net, backend="aot_eager"))):
        net.zero_grad()
        model(x).square().sum().backward()
        grads[name] = [p.grad.clone() for p in net.parameters()]
    for eager, compiled in zip(grads["eager"], grads["compiled"], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_pgd_on_a_triton_model_gives_the_plain_models_examples():
    torch.manual_seed(0)
    plain, fast = _pair(4)
    plain, fast = plain.float(), fast.float()
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3)).to(DEVICE)
    stem = torch.nn.Conv2d(1, 4, 3, padding=1).to(DEVICE)
    x, y = torch.rand(3, 1, 5, 5, device=DEVICE), torch.tensor([0, 1, 2], device=DEVICE)
    attack = create_attack("pgd", 0.1, steps=3, random_init=False)
    examples = [attack(torch.nn.Sequential(stem, act, head), x, y) for act in (plain, fast)]
    torch.testing.assert_close(examples[1], examples[0], rtol=0, atol=1e-5)


def test_site_path_names_triton_where_it_runs_and_falls_back_with_one_line(monkeypatch, caplog):
    x = torch.zeros(1, 2, 3, 3)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert site.site_path("triton", x) == "triton"
    assert site.site_path(None, x) == "fused"  # the CPU default stays the native site
    monkeypatch.delenv("TRITON_INTERPRET")
    site._say_triton_unavailable.cache_clear()
    with caplog.at_level(logging.INFO, logger="sparta.site"):
        assert site.site_path("triton", x) == "plain"
        assert site.site_path("triton", x) == "plain"
    said = [r.getMessage() for r in caplog.records if "Triton site" in r.getMessage()]
    assert len(said) == 1 and "plain" in said[0]


def test_sparta_refuses_an_unknown_path_naming_the_choices():
    with pytest.raises(SpartaError, match="triton"):
        Sparta(4, fused="cuda")
