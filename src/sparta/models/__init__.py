"""Model registry: `build_model(name, activation, num_classes, in_channels, ...)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from sparta.errors import SpartaError
from sparta.models.common import CallableActivation, NamedActivation, Normalize, SiteActivation
from sparta.models.resnet import ResNet
from sparta.models.smallcnn import SmallCNN
from sparta.models.wrn import WideResNet
from sparta.registry import Registry
from sparta.sharing import share_sparta
from sparta.sparta_activation import Sparta

ModelEntry = Callable[..., nn.Module]
MODELS: Registry[ModelEntry] = Registry("model")


@MODELS.register("smallcnn")
def smallcnn(act, num_classes, in_channels, image_size, normalize):
    """The TRADES SmallCNN, the usual small model for MNIST-like data sets."""
    return SmallCNN(act, num_classes, in_channels, image_size, normalize)


@MODELS.register("resnet18")
def resnet18(act, num_classes, in_channels, image_size, normalize):
    """CIFAR-style ResNet-18."""
    return ResNet(act, (2, 2, 2, 2), num_classes, in_channels, normalize)


@MODELS.register("resnet34")
def resnet34(act, num_classes, in_channels, image_size, normalize):
    """CIFAR-style ResNet-34."""
    return ResNet(act, (3, 4, 6, 3), num_classes, in_channels, normalize)


@MODELS.register("preact_resnet18")
def preact_resnet18(act, num_classes, in_channels, image_size, normalize):
    """PreAct ResNet-18, the usual model of adversarial-training papers (Rice et al.)."""
    return ResNet(act, (2, 2, 2, 2), num_classes, in_channels, normalize, preact=True)


@MODELS.register("resnet20")
def resnet20(act, num_classes, in_channels, image_size, normalize):
    """He et al.'s three-stage CIFAR ResNet-20 (0.27M parameters): a second small CNN for cross-CNN runs."""
    return ResNet(act, (3, 3, 3), num_classes, in_channels, normalize, widths=(16, 32, 64))


@MODELS.register("wrn34_10")
def wrn34_10(act, num_classes, in_channels, image_size, normalize):
    """WideResNet-34-10, the usual CIFAR PGD-AT benchmark model."""
    return WideResNet(act, 34, 10, num_classes, in_channels, normalize)


def model_names() -> list[str]:
    """Registered model names, for the CLI's choices and `build_model`."""
    return MODELS.names()


def build_model(
    name: str,
    activation: str | Callable[..., nn.Module] = "relu",
    num_classes: int | None = None,
    in_channels: int | None = None,
    *,
    dataset: str | None = None,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    share: str = "stage",
    **activation_options: object,
) -> nn.Module:
    """Build a classifier taking [0, 1] images; it normalises with (mean, std) inside.

    `dataset` fills num_classes, in_channels, image_size, mean and std from that data set
    (what `sparta train` uses); without it: 10 classes, 3 x 32 x 32, mean = std = 0.5.
    `activation` is a registered name (`sparta.activation_names()`), one of their classes
    (nn.ReLU, sparta.Sparta, ...), or any callable returning a module, called with the
    site's channel count if it takes one (`lambda c: MyAct(c)`, nn.PReLU), else without
    (nn.Tanh), as timm's `act_layer`; such a model records no build spec (load it with
    load_checkpoint(path, model=...)). `share` (layer, stage, network) ties Sparta's phi
    and beta across sites. Other keywords go to every activation site.
    """
    entry = MODELS.get(name)
    facts = _input_facts(dataset, num_classes, in_channels, image_size, mean, std)
    activation = registered_activation(activation) or activation
    act: SiteActivation = (
        NamedActivation(activation, **activation_options)
        if isinstance(activation, str)
        else CallableActivation(activation, **activation_options)
    )
    model = entry(act, *facts[:3], Normalize(*facts[3:]))
    if any(isinstance(m, Sparta) for m in model.modules()):
        share_sparta(model, share)
    spec = _build_spec(name, activation, facts, share, activation_options) if isinstance(activation, str) else None
    # setattr: nn.Module.__setattr__ is typed for tensors and modules only, the spec is a dict
    setattr(model, "build_spec", spec)  # noqa: B010  (None: a callable of the caller's own cannot be rebuilt)
    return model


def build_spec_for(
    name: str, activation: str, dataset: str, share: str = "stage", **options: object
) -> dict[str, object]:
    """The build spec `build_model(name, activation, dataset=dataset, share=share, **options)`
    records, without building the model (to compare with a checkpoint's)."""
    facts = _input_facts(dataset, None, None, None, None, None)
    return _build_spec(MODELS.canonical(name), registered_activation(activation) or activation, facts, share, options)


def _build_spec(name: str, activation: str, facts: tuple, share: str, options: dict[str, object]) -> dict[str, object]:
    """Everything needed to rebuild the model from a file; checkpoints store it."""
    num_classes, in_channels, image_size, mean, std = facts
    return {"name": MODELS.canonical(name), "activation": activation, "num_classes": num_classes,
            "in_channels": in_channels, "image_size": image_size, "mean": list(mean), "std": list(std),
            "share": share, **options}  # fmt: skip


def _input_facts(
    dataset: str | None,
    num_classes: int | None,
    in_channels: int | None,
    image_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> tuple[int, int, int, tuple[float, ...], tuple[float, ...]]:
    """(num_classes, in_channels, image_size, mean, std): given values win, then the data
    set's, then 10 classes of 3 x 32 x 32 images normalised with 0.5; checked to fit together."""
    if dataset is not None:
        from sparta.data import dataset_info

        info = dataset_info(dataset)
        defaults = (info.num_classes, info.channels, info.image_size, info.mean, info.std)
    else:
        channels = in_channels or 3
        defaults = (10, channels, 32, (0.5,) * channels, (0.5,) * channels)
    facts = (
        num_classes if num_classes is not None else defaults[0],
        in_channels if in_channels is not None else defaults[1],
        image_size if image_size is not None else defaults[2],
        tuple(mean if mean is not None else defaults[3]),
        tuple(std if std is not None else defaults[4]),
    )
    classes, channels, _, means, stds = facts
    if classes < 2 or channels < 1:
        raise SpartaError(f"need num_classes >= 2 and in_channels >= 1, got {classes} and {channels}")
    if len(means) != channels or len(stds) != channels or min(stds) <= 0:
        raise SpartaError(f"mean/std need {channels} values with std > 0, got {means} and {stds}")
    return facts


def registered_activation(activation: str | Callable[..., nn.Module]) -> str | None:
    """The registry name of an activation given by name or by a registered class; None for
    any other callable (an unknown name is an error)."""
    from sparta.activations import ACTIVATIONS

    if isinstance(activation, str):
        return ACTIVATIONS.canonical(activation)
    if not callable(activation):
        raise SpartaError(
            f"activation must be a name, a module class or a callable returning a module, got {activation!r}"
        )
    for name in ACTIVATIONS.names():
        factory = ACTIVATIONS.get(name)
        if activation is factory or activation is getattr(factory, "module", None):
            return name
    return None
