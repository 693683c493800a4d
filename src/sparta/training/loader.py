"""Batches from one device-resident tensor, shuffled and augmented on the device.

No worker processes: the whole training set sits on the training device (Fashion-MNIST
is 188 MB as float32), as in airbench.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from sparta.errors import SpartaError

AUGMENTATIONS = ("none", "crop", "crop-flip")  # each dataset's default is its spec's `augment`


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and cut a random H x W window per image, in one gather."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    cut = padded.gather(2, rows.expand(n, c, h, padded.shape[3]))
    return cut.gather(3, cols.expand(n, c, h, w))


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (crop-flip augmentation)."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class DeviceLoader:
    """Iterates over (x, y) batches of a fixed epoch's permutation; drop_last keeps shapes static."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: str = "none",
        device: torch.device | str = "cpu",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise SpartaError(f"unknown augmentation '{augment}'; choose from: {', '.join(AUGMENTATIONS)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = min(batch_size, len(labels))
        self.seed = seed
        self.augment = augment
        self.padding = max(2, images.shape[-1] // 8)

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`; the same seed and epoch always give the same batches."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.labels), device=self.device, generator=generator)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            x = self.images[index]
            if self.augment != "none":
                x = random_crop(x, self.padding, generator)
            if self.augment == "crop-flip":
                x = random_flip(x, generator)
            yield x, self.labels[index]
