"""The fast Sparta path computes the reference function: values and gradients, CPU and CUDA.

On CPU the compiled path is exercised with the `aot_eager` backend: the same Dynamo
capture and AOT-autograd forward/backward split as on CUDA, without Inductor's long
C++ compile; on CUDA (when present) with Inductor's Triton kernels.
"""

import pytest
import torch

from sparta import Sparta, SpartaError, build_model, create_activation, site, sparta_activation
from sparta.site import compiled as compiled_site
from sparta.site import site_path
from sparta.site.compiled import compiled_sparta_function
from sparta.site.reference import same_conv, sparta_function


def _args(module: Sparta, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The pure function's arguments, phi's weights as the module's forward passes them
    (their gradient scaled by phi_grad_scale)."""
    return x, *module.phi_weights(), module.log_beta


def _value_and_grads(fn, module: Sparta, x: torch.Tensor):
    """Output and the gradients of a fixed random projection w.r.t. x and every parameter."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(y)
    (y.float() * weight.float()).sum().backward()
    grads = {"x": x.grad}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return y.detach(), grads


def _assert_same(fast_fn, module: Sparta, x: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5):
    module.fused = False
    ref, ref_grads = _value_and_grads(module, module, x)
    got, got_grads = _value_and_grads(fast_fn, module, x)
    assert torch.allclose(got.float(), ref.float(), rtol=rtol, atol=atol)
    assert set(got_grads) == set(ref_grads)
    for name, expected in ref_grads.items():
        assert got_grads[name] is not None, name
        assert torch.allclose(got_grads[name].float(), expected.float(), rtol=rtol, atol=atol), name


SETTINGS = [dict(), dict(per_channel_beta=True), dict(groups=2), dict(groups=6), dict(kernel_size=5, hidden=4)]


@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_pure_function_matches_reference(options, random_sparta):
    module = random_sparta(6, **options)
    x = torch.randn(3, 6, 7, 5) * 2
    _assert_same(lambda v: sparta_function(*_args(module, v)), module, x)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("depthwise", [False, True], ids=["dense", "depthwise"])
def test_same_conv_on_one_pixel_is_the_convolution(kernel_size, depthwise):
    """The centre-tap product that replaces phi's convolution on 1 x 1 maps is the same map."""
    torch.manual_seed(0)
    channels, out = (4, 4) if depthwise else (2, 8)
    groups = channels if depthwise else 1
    weight = torch.randn(out, channels // groups, kernel_size, kernel_size, dtype=torch.float64)
    weight = weight.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    bias = torch.randn(out, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, channels, 1, 1, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=kernel_size // 2, groups=groups)
    got = same_conv(x, weight, bias, groups=groups)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(got.square().sum(), (x, weight, bias))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, weight, bias))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_gradcheck_pure_function_float64(random_sparta):
    module = random_sparta(3, hidden=2, per_channel_beta=True).double()
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    inputs = tuple(t.detach().clone().requires_grad_(True) for t in _args(module, x))
    assert torch.autograd.gradcheck(sparta_function, inputs, eps=1e-6, atol=1e-5)


def test_compiled_function_matches_reference_and_gradchecks(random_sparta):
    compiled = compiled_sparta_function("aot_eager")
    module = random_sparta(5)
    _assert_same(lambda v: compiled(*_args(module, v)), module, torch.randn(4, 5, 6, 6))
    double = random_sparta(3, hidden=2).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    inputs = tuple(t.detach().clone().requires_grad_(True) for t in _args(double, x))
    assert torch.autograd.gradcheck(compiled, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.fixture()
def cpu_compiler(monkeypatch):
    """Route the module's fast path through the aot_eager backend on CPU and count its calls."""
    calls = []
    compiled = compiled_sparta_function("aot_eager")

    def counting(*args):
        calls.append(args[0].shape)
        return compiled(*args)

    monkeypatch.setattr(compiled_site, "compiled_sparta_function", lambda backend="inductor": counting)
    monkeypatch.setattr(sparta_activation, "site_path", lambda fused, x: "compiled" if fused else "plain")
    return calls


def test_module_compiled_path_matches_reference(cpu_compiler, random_sparta):
    module = random_sparta(8, fused=True)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)

    def fast_forward(v):
        module.fused = True
        return module(v)

    _assert_same(fast_forward, module, x)
    assert cpu_compiler, "fused=True did not take the compiled path"


def test_flat_input_takes_compiled_path(cpu_compiler, random_sparta):
    module = random_sparta(10, fused=True)
    x = torch.randn(4, 10)
    y = module(x)
    module.fused = False
    assert y.shape == x.shape and torch.allclose(y, module(x), atol=1e-6)
    assert cpu_compiler == [torch.Size([4, 10, 1, 1])]


def test_which_path_a_site_takes():
    cpu = torch.zeros(1, 2, 3, 3)
    assert site_path(None, cpu) == site_path(True, cpu) == "fused"
    assert site_path(False, cpu) == "plain"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert site_path(None, cpu) == "plain"
    meta = torch.zeros(1, 2, 3, 3, device="meta")  # any device but the CPU: opt-in only
    assert site_path(None, meta) == "plain" and site_path(True, meta) == "fused"
    assert [site_path(name, cpu) for name in ("plain", "fused", "compiled")] == ["plain", "fused", "compiled"]
    with pytest.raises(SpartaError, match="one of plain, fused, compiled"):
        Sparta(4, fused="fast")


def test_inside_an_enclosing_compile_the_site_is_plain(monkeypatch, random_sparta):
    paths = []

    def recording(fused, x):
        paths.append(site_path(fused, x))
        return paths[-1]

    monkeypatch.setattr(sparta_activation, "site_path", recording)
    module = random_sparta(4, fused=None)
    x = torch.randn(2, 4, 5, 5)
    expected = module(x)
    assert paths == ["fused"]
    outer = torch.compile(module, backend="aot_eager", fullgraph=True)
    assert torch.allclose(outer(x), expected, atol=1e-6)
    assert paths[1:] and set(paths[1:]) == {"plain"}, "the fast path ran inside an enclosing compile"


def test_option_keeps_parameters_and_threshold(random_sparta):
    plain, fused = random_sparta(6, seed=3), Sparta(6, fused=True)
    assert list(plain.state_dict()) == list(fused.state_dict())
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 4, 4)
    assert torch.equal(fused.threshold(x), plain.threshold(x))
    assert isinstance(create_activation("sparta", 6, fused=False), Sparta)


def test_fused_needs_pooled_phi():
    with pytest.raises(SpartaError, match="pooled"):
        Sparta(4, phi="depthwise", fused=True)
    assert Sparta(4, phi="depthwise").fused is None  # auto: the plain path for depthwise


@pytest.mark.parametrize("path", ["fused", "compiled", "triton"])
def test_a_whole_smallcnn_on_each_fast_path_matches_the_plain_one(path, monkeypatch):
    """Stage-shared Sparta, conv and flat sites: loss and all gradients; fused is the CPU default."""
    if path == "triton" and not site.triton_runs_on(torch.zeros(1)):
        pytest.skip("the Triton site needs triton (and TRITON_INTERPRET=1 on the CPU)")
    compiled = compiled_sparta_function("aot_eager")
    monkeypatch.setattr(compiled_site, "compiled_sparta_function", lambda backend="inductor": compiled)
    calls = []
    real = site.FAST_SITES[path]
    monkeypatch.setitem(site.FAST_SITES, path, lambda *args: calls.append(1) or real(*args))
    torch.manual_seed(0)
    model = build_model("smallcnn", "sparta", 10, 1, image_size=28)
    sites = [module for module in model.modules() if isinstance(module, Sparta)]
    for module in sites:
        torch.nn.init.normal_(module.phi.conv2.weight, std=0.3)
    model.head[-1].weight.data.normal_(std=0.1)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))

    def loss_and_grads(fused):
        for module in sites:
            module.fused = fused
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_loss, ref = loss_and_grads(False)
    assert not calls
    got_loss, got = loss_and_grads(None if path == "fused" else path)
    assert len(calls) == len(sites) == 6  # every site went through the path
    torch.testing.assert_close(got_loss, ref_loss)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_fast_path_matches_reference_fp32(channels_last, monkeypatch, random_sparta):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convs differ by 1e-3
    module = random_sparta(64).cuda()
    assert site_path(None, torch.zeros(1, device="cuda")) == "plain"
    assert site_path(True, torch.zeros(1, device="cuda")) == (
        "triton" if site.triton_runs_on(module.log_beta) else "fused"
    )
    x = torch.randn(8, 64, 16, 16, device="cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def fast_forward(v):
        module.fused = True
        return module(v)

    _assert_same(fast_forward, module, x, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
def test_cuda_fast_path_matches_reference_bf16_autocast(random_sparta):
    module = random_sparta(32, per_channel_beta=True).cuda()
    # Inside an autocast model a site sees a convolution's bf16 output.
    x = torch.randn(8, 32, 16, 16, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)

    def under_autocast(fused):
        def run(v):
            module.fused = fused
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return module(v)

        return run

    ref, ref_grads = _value_and_grads(under_autocast(False), module, x)
    got, got_grads = _value_and_grads(under_autocast(True), module, x)
    assert got.dtype == ref.dtype == torch.bfloat16
    # bf16 keeps 8 bits: the fused kernels round at other points than eager ops do.
    assert (got.float() - ref.float()).abs().max() <= 0.05 * ref.float().abs().max()
    for name, expected in ref_grads.items():
        error = (got_grads[name].float() - expected.float()).norm() / expected.float().norm()
        assert error < 0.05, name
