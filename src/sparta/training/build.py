"""What a run is built from, checked before anything is written: its model (built from
the settings or the caller's own, with an imported Sparta function), its training batches
(the seeded subset) and the schedule they give. `check_settings` runs every check without
training, so a grid refuses a bad cell before its first cell trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from sparta.attacks import model_mode
from sparta.config import CUSTOM_MODEL, TrainConfig
from sparta.data import dataset_info, load_dataset, split_size
from sparta.errors import SpartaError
from sparta.models import build_model
from sparta.sharing import import_sparta
from sparta.training.loader import AUGMENTATIONS, DeviceLoader
from sparta.training.schedule import SCHEDULES


def take_subset(images: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int):
    """The first n of a seeded shuffle: the same subset for every activation and method."""
    check_subset(n, len(labels))
    if n is None or n == len(labels):
        return images, labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    return images[order], labels[order]


def check_subset(n: int | None, available: int) -> None:
    """Refuse a subset larger than the training set."""
    if n is not None and n > available:
        raise SpartaError(f"subset {n} is larger than the training set ({available} images)")


def model_for(config: TrainConfig, model: nn.Module | None = None) -> nn.Module:
    """The run's model: built from the config, or the caller's own `model`; then the Sparta
    function of `sparta_from` imported (and frozen) into it."""
    info = dataset_info(config.dataset)
    if model is None and config.model == CUSTOM_MODEL:
        raise SpartaError(
            f"the settings name a model of your own (model '{CUSTOM_MODEL}'), which sparta cannot "
            "rebuild: pass it, as in sparta.train(sparta.TrainConfig.load(RUN_DIR), model=your_model, "
            "resume=True)"
        )
    if model is None:
        model = build_model(
            config.model,
            config.act,
            num_classes=info.num_classes,
            in_channels=info.channels,
            image_size=info.image_size,
            mean=info.mean,
            std=info.std,
            share=config.share,
            **config.act_options,
        )
    if config.sparta_from:
        import_sparta(model, config.sparta_from, freeze=config.freeze_sparta)
    return model


def check_own_model(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """A model of the user's own takes the dataset's images and returns one logit per class,
    and has weights to train: checked on two test images before anything is written."""
    if not any(p.requires_grad for p in model.parameters()):
        raise SpartaError(f"your model ({type(model).__name__}) has no trainable parameters")
    try:
        with model_mode(model, False), torch.no_grad():
            logits = model(x)
    except (RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise SpartaError(
            f"your model ({type(model).__name__}) fails on this dataset's images of shape "
            f"{tuple(x.shape[1:])} (in [0, 1]): {first}"
        ) from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise SpartaError(
            f"your model ({type(model).__name__}) must return logits of shape "
            f"(batch, {num_classes}) on this dataset, got {shape} for a batch of {len(x)}"
        )


def check_settings(config: TrainConfig) -> None:
    """Every check `train` makes of a config before it writes anything, without training:
    the settings, the data set and subset, the schedule's first step, the model and the
    Sparta function it imports. A grid runs it on each cell before the first one trains."""
    config = dataclasses.replace(config).validate()
    size = split_size(config.dataset, "train", config.data_root)
    check_subset(config.subset, size)
    images = config.subset or size
    if (config.augment or "none") not in AUGMENTATIONS:
        raise SpartaError(f"unknown augmentation '{config.augment}'; choose from: {', '.join(AUGMENTATIONS)}")
    check_schedule(config, SCHEDULES.get(config.schedule), images // min(config.batch_size, images))
    model_for(config)


def make_loader(config: TrainConfig, device: torch.device) -> DeviceLoader:
    """The batches of the training (sub)set; a subset larger than the data set is refused."""
    images, labels = load_dataset(config.dataset, "train", config.data_root)
    images, labels = take_subset(images, labels, config.subset, config.seed)
    augment = config.augment or dataset_info(config.dataset).augment
    return DeviceLoader(images, labels, config.batch_size, config.seed, augment, device)


def check_schedule(config: TrainConfig, schedule: Callable[[float], float], batches: int) -> None:
    """Refuse a run whose schedule gives its first step no learning rate (too few steps)."""
    total_steps = config.epochs * batches
    if not schedule(1 / total_steps) > 0:
        raise SpartaError(
            f"{config.epochs} epoch(s) of {batches} batch(es) give {total_steps} step(s), and "
            f"the {config.schedule} schedule's learning rate is 0 at the first: the model would "
            "not train; use more epochs, a smaller --batch-size or --schedule constant"
        )
