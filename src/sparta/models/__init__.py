"""Model registry: `build_model(name, activation, num_classes, in_channels, ...)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from sparta.errors import SpartaError
from sparta.models.common import ActivationFactory, Normalize, StagedNet
from sparta.models.resnet import ResNet
from sparta.models.smallcnn import SmallCNN
from sparta.models.wrn import WideResNet
from sparta.registry import Registry
from sparta.sharing import share_sparta

ModelEntry = Callable[..., nn.Module]
MODELS: Registry[ModelEntry] = Registry("model")


@MODELS.register("smallcnn")
def smallcnn(act, num_classes, in_channels, image_size, normalize):
    return SmallCNN(act, num_classes, in_channels, image_size, normalize)


@MODELS.register("resnet18")
def resnet18(act, num_classes, in_channels, image_size, normalize):
    return ResNet(act, (2, 2, 2, 2), num_classes, in_channels, normalize)


@MODELS.register("resnet34")
def resnet34(act, num_classes, in_channels, image_size, normalize):
    return ResNet(act, (3, 4, 6, 3), num_classes, in_channels, normalize)


@MODELS.register("preact_resnet18")
def preact_resnet18(act, num_classes, in_channels, image_size, normalize):
    return ResNet(act, (2, 2, 2, 2), num_classes, in_channels, normalize, preact=True)


@MODELS.register("resnet20")
def resnet20(act, num_classes, in_channels, image_size, normalize):
    return ResNet(act, (3, 3, 3), num_classes, in_channels, normalize, widths=(16, 32, 64))


@MODELS.register("wrn34_10")
def wrn34_10(act, num_classes, in_channels, image_size, normalize):
    return WideResNet(act, 34, 10, num_classes, in_channels, normalize)


def model_names() -> list[str]:
    return MODELS.names()


def build_model(name: str, activation: str = "relu", num_classes: int = 10, in_channels: int = 3,
                *, image_size: int = 32, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, share: str = "stage",
                **activation_options: object) -> nn.Module:
    """Build a classifier taking [0, 1] images; it normalises with (mean, std) inside.

    `share` (layer, stage, network) ties Sparta's phi and beta across sites; it is
    ignored for other activations. Other keywords go to every activation site.
    """
    entry = MODELS.get(name)
    if num_classes < 2 or in_channels < 1:
        raise SpartaError(f"need num_classes >= 2 and in_channels >= 1, got {num_classes} and {in_channels}")
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.5,) * in_channels
    if len(mean) != in_channels or len(std) != in_channels or min(std) <= 0:
        raise SpartaError(f"mean/std need {in_channels} values with std > 0, got {mean} and {std}")
    act = ActivationFactory(activation, **activation_options)
    model = entry(act, num_classes, in_channels, image_size, Normalize(mean, std))
    if act.name.lower() == "sparta":
        share_sparta(model, share)
    # Everything needed to rebuild this model; checkpoints store it.
    model.build_spec = {"name": MODELS.canonical(name), "activation": activation,
                        "num_classes": num_classes, "in_channels": in_channels,
                        "image_size": image_size, "mean": list(mean), "std": list(std),
                        "share": share, **activation_options}
    return model


__all__ = ["MODELS", "StagedNet", "build_model", "model_names"]
