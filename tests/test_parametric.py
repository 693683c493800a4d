"""PSSiLU and parametric Softplus: their special cases, gradients, valid ranges, and
their path through models, conversion, checkpoints and `sparta compare`."""

import math

import pytest
import torch
import torch.nn.functional as F

from sparta import ParametricSoftplus, PSSiLU, SpartaError, build_model, convert_activations, create_activation
from sparta.checkpoint import load_checkpoint, save_checkpoint
from sparta.parametric import BETA_MAX

X = torch.linspace(-6, 6, 241, dtype=torch.float64)


def test_pssilu_near_zero_shift_is_silu_with_slope_alpha():
    act = PSSiLU(alpha0=2.0, beta0=1e-9).double()
    torch.testing.assert_close(act(X), X * torch.sigmoid(2.0 * X), atol=1e-8, rtol=0)


def test_pssilu_large_slope_is_relu():
    act = PSSiLU(alpha0=1e4, beta0=1e-9).double()
    torch.testing.assert_close(act(X), F.relu(X), atol=1e-3, rtol=0)


def test_pssilu_shift_gives_negative_inputs_positive_outputs():
    """The shape the paper ties to robustness: beta > 0, alpha large -> x * (1 or 0 - beta)/(1-beta)."""
    act = PSSiLU(alpha0=50.0, beta0=0.2).double()
    y = act(torch.tensor([-2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([-2.0 * -0.2 / 0.8, 2.0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert y[0] > 0


def test_psoftplus_alpha_one_is_softplus_and_large_alpha_is_relu():
    torch.testing.assert_close(ParametricSoftplus(alpha0=1.0).double()(X), F.softplus(X))
    torch.testing.assert_close(ParametricSoftplus(alpha0=1e4).double()(X), F.relu(X), atol=1e-4, rtol=0)
    x = torch.tensor([0.0], dtype=torch.float64)
    assert ParametricSoftplus(alpha0=10.0).double()(x).item() == pytest.approx(math.log(2) / 10)


@pytest.mark.parametrize(
    "act", [PSSiLU(alpha0=1.5, beta0=0.3), ParametricSoftplus(alpha0=3.0)], ids=["pssilu", "psoftplus"]
)
def test_gradcheck_float64(act):
    act = act.double()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    params = [p for p in act.parameters()]

    def fn(x, *values):
        with torch.no_grad():
            for p, v in zip(params, values):
                p.copy_(v)
        return torch.func.functional_call(act, dict(zip([n for n, _ in act.named_parameters()], values)), (x,))

    values = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(fn, (x, *values), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["pssilu", "psoftplus"])
def test_parameters_stay_valid_after_any_step(name):
    act = create_activation(name, 8)
    optimizer = torch.optim.SGD(act.parameters(), lr=1e6)
    for sign in (1.0, -1.0):
        optimizer.zero_grad()
        (sign * act(torch.randn(4, 8, 3, 3)).sum()).backward()
        optimizer.step()
        with torch.no_grad():
            for p in act.parameters():
                p.clamp_(-80, 80)  # what a huge step can leave: still a valid activation
        assert act.alpha.item() > 0
        if name == "pssilu":
            assert 0 <= act.beta.item() <= BETA_MAX < 1
        assert torch.isfinite(act(torch.randn(4, 8, 3, 3))).all()


@pytest.mark.parametrize("options", [{"alpha0": 0.0}, {"alpha0": -1.0}, {"beta0": 1.0}, {"beta0": 0.0}])
def test_bad_starting_values_are_refused(options):
    with pytest.raises(SpartaError, match="pssilu"):
        create_activation("pssilu", 4, **options)


@pytest.mark.parametrize("name", ["pssilu", "psoftplus"])
def test_models_convert_and_checkpoints_keep_the_parameters(name, tmp_path):
    model = build_model("smallcnn", name, in_channels=1, image_size=28)
    sites = [m for m in model.modules() if isinstance(m, (PSSiLU, ParametricSoftplus))]
    assert len(sites) >= 3 and len({id(m) for m in sites}) == len(sites)
    with torch.no_grad():
        for i, site in enumerate(sites):
            site.log_alpha.fill_(0.1 * i)
    save_checkpoint(model, tmp_path / "model.safetensors")
    loaded, _ = load_checkpoint(tmp_path / "model.safetensors")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))

    converted = convert_activations(build_model("smallcnn", "relu", in_channels=1, image_size=28), name)
    assert sum(isinstance(m, (PSSiLU, ParametricSoftplus)) for m in converted.modules()) == len(sites)
    back = convert_activations(converted, "sparta")
    assert not any(isinstance(m, (PSSiLU, ParametricSoftplus)) for m in back.modules())
