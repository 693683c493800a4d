import pytest
import torch
from torch import nn

import sparta
from sparta import SpartaError, create_activation

ALL = ["relu", "swish", "silu", "softplus", "gelu", "elu", "prelu", "frelu", "sparta"]


@pytest.mark.parametrize("name", ALL)
def test_every_activation_builds_and_runs(name):
    act = create_activation(name, 6)
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    y = act(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_registry_lists_the_design_names():
    assert set(sparta.activation_names()) == {
        "relu",
        "swish",
        "softplus",
        "gelu",
        "elu",
        "prelu",
        "frelu",
        "sparta",
        "pssilu",
        "psoftplus",
    }


def test_each_call_builds_a_new_instance():
    a, b = create_activation("sparta", 4), create_activation("sparta", 4)
    assert a is not b and a.log_beta is not b.log_beta


def test_silu_alias_and_case():
    assert isinstance(create_activation("SiLU", 3), nn.SiLU)
    assert isinstance(create_activation("swish", 3), nn.SiLU)


def test_prelu_is_per_channel():
    assert create_activation("prelu", 7).weight.shape == (7,)


def test_frelu_is_max_of_x_and_spatial_condition():
    act = create_activation("frelu", 3).eval()
    x = torch.randn(2, 3, 6, 6)
    condition = act.norm(act.conv(x))
    assert torch.equal(act(x), torch.maximum(x, condition))


def test_unknown_activation_names_choices():
    with pytest.raises(SpartaError, match=r"unknown activation 'rellu'.*sparta"):
        create_activation("rellu", 4)


def test_unknown_option_is_clear():
    with pytest.raises(SpartaError, match="activation 'sparta' has no option bogus"):
        create_activation("sparta", 4, bogus=1)


def test_options_reach_sparta():
    act = create_activation("sparta", 4, phi="depthwise", kernel_size=5, beta0=2.0)
    assert act.phi_kind == "depthwise" and act.phi.conv.kernel_size == (5, 5)
