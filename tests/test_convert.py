"""convert_activations on models the library did not create."""

import pytest
import torch
from torch import nn

import sparta
from sparta import Sparta, SpartaError, convert_activations


class PlainNet(nn.Module):
    """A user's CNN in plain torch.nn, with a ReLU object reused at two sites."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 24, 3, padding=1),
            nn.GELU(),
            nn.MaxPool2d(2),
        )
        self.conv = nn.Conv2d(24, 24, 3, padding=1)
        self.shared = nn.ReLU()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(24 * 4 * 4, 32), nn.SiLU(), nn.Linear(32, 5))

    def forward(self, x):
        x = self.shared(self.conv(self.features(x)))
        return self.classifier(self.shared(x))


def test_converts_every_relu_family_module_with_inferred_channels():
    model = convert_activations(PlainNet(), "sparta", phi="depthwise")
    sites = [m for m in model.modules() if isinstance(m, Sparta)]
    assert [m.channels for m in sites] == [16, 24, 24, 32]
    assert not any(isinstance(m, (nn.ReLU, nn.GELU, nn.SiLU)) for m in model.modules())
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 5)


def test_shared_module_stays_shared():
    model = convert_activations(PlainNet(), "prelu")
    assert isinstance(model.shared, nn.PReLU) and model.shared.weight.shape == (24,)


def test_converted_model_trains():
    model = convert_activations(PlainNet(), "sparta")
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    phis = [m.phi.conv1.weight.grad for m in model.modules() if isinstance(m, Sparta)]
    assert all(g is not None for g in phis)


def test_targets_can_be_narrowed():
    model = convert_activations(PlainNet(), "swish", targets=(nn.GELU,))
    assert isinstance(model.features[2], nn.ReLU) and isinstance(model.features[4], nn.SiLU)


def test_nothing_to_convert_is_an_error():
    with pytest.raises(SpartaError, match="no activation"):
        convert_activations(nn.Sequential(nn.Linear(3, 3)), "sparta")


def test_activation_before_any_layer_is_an_error():
    with pytest.raises(SpartaError, match="cannot infer the channel count"):
        convert_activations(nn.Sequential(nn.ReLU(), nn.Linear(3, 3)), "prelu")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [("foo", {}, "unknown activation 'foo'"), ("sparta", {"phii": "pooled"}, "activation 'sparta' has no option phii")],
)
def test_a_bad_request_is_named_before_the_model_is_read(name, options, message):
    """Even where the model itself could not be converted (no layer before the activation)."""
    model = nn.Sequential(nn.ReLU(), nn.Linear(3, 3))
    with pytest.raises(SpartaError, match=message):
        convert_activations(model, name, **options)
    assert isinstance(model[0], nn.ReLU)


def test_excluded_paths_keep_their_activation():
    model = convert_activations(PlainNet(), "sparta", exclude=["classifier"])
    assert isinstance(model.classifier[2], nn.SiLU)
    assert [m.channels for m in model.modules() if isinstance(m, Sparta)] == [16, 24, 24]
    with pytest.raises(SpartaError, match="exclude names no module of the model: head"):
        convert_activations(PlainNet(), "sparta", exclude=["head"])


def test_a_converted_model_converts_again_without_reading_inside_its_activations():
    """Sparta's own small convolutions (2 -> 8 -> 1 channels) never count as the model's layers."""
    model = convert_activations(convert_activations(PlainNet(), "sparta"), "pssilu")
    sites = [m for m in model.modules() if isinstance(m, sparta.PSSiLU)]
    assert len(sites) == 4 and not any(isinstance(m, Sparta) for m in model.modules())
    back = convert_activations(model, "sparta", phi="depthwise")
    assert [m.channels for m in back.modules() if isinstance(m, Sparta)] == [16, 24, 24, 32]
