"""SmallCNN: the 4-conv + 2-fc network of MNIST robustness work (TRADES, Zhang et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn

from sparta.errors import SpartaError
from sparta.models.common import Normalize, SiteActivation, StagedNet


class SmallCNN(StagedNet):
    """The TRADES SmallCNN: two conv blocks and a 200-200 fc head, for images of 14 x 14 and up."""

    stage_names = ("block1", "block2", "head")

    def __init__(
        self, act: SiteActivation, num_classes: int, in_channels: int, image_size: int, normalize: Normalize
    ) -> None:
        super().__init__()
        self.image_size = image_size
        feature_size = ((image_size - 4) // 2 - 4) // 2
        if feature_size < 1:
            raise SpartaError(f"smallcnn needs images of at least 14 x 14, got {image_size}")
        self.normalize = normalize
        self.block1 = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), act(32), nn.Conv2d(32, 32, 3), act(32), nn.MaxPool2d(2)
        )
        self.block2 = nn.Sequential(nn.Conv2d(32, 64, 3), act(64), nn.Conv2d(64, 64, 3), act(64), nn.MaxPool2d(2))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * feature_size * feature_size, 200),
            act(200),
            nn.Linear(200, 200),
            act(200),
            nn.Linear(200, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """As in the TRADES SmallCNN: Kaiming convs, zero biases, a zero last layer."""
        for module in (*self.block1, *self.block2):
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:  # every conv here has one
                    nn.init.zeros_(module.bias)
        for module in self.head:
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise SpartaError(
                f"smallcnn was built for {self.image_size} x {self.image_size} images, "
                f"got {x.shape[-2]} x {x.shape[-1]}"
            )
        return self.head(self.block2(self.block1(self.normalize(x))))
