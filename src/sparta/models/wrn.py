"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the usual CIFAR PGD-AT benchmark model.

Its blocks are the pre-activation blocks of PreAct ResNet, made wide.
"""

from __future__ import annotations

import torch
from torch import nn

from sparta.models.common import Normalize, SiteActivation, StagedNet
from sparta.models.resnet import PreActBlock, make_stage


class WideResNet(StagedNet):
    """A WideResNet (`depth`, `widen`) of pre-activation blocks in three stages."""

    stage_names = ("stem", "layer1", "layer2", "layer3")
    layer1: nn.Sequential  # set by name in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self, act: SiteActivation, depth: int, widen: int, num_classes: int, in_channels: int, normalize: Normalize
    ) -> None:
        super().__init__()
        per_stage = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.normalize = normalize
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False))
        for index, planes in enumerate(widths, start=1):
            in_planes = 16 if index == 1 else widths[index - 2]
            setattr(
                self,
                f"layer{index}",
                make_stage(PreActBlock, act, in_planes, planes, per_stage, 1 if index == 1 else 2),
            )
        self.layer3.append(nn.Sequential(nn.BatchNorm2d(widths[-1]), act(widths[-1])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.stem(self.normalize(x)))))
        return self.fc(self.pool(out).flatten(1))
