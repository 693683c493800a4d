"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the usual CIFAR PGD-AT benchmark model."""

from __future__ import annotations

import torch
from torch import nn

from sparta.models.common import ActivationFactory, Normalize, StagedNet


class WideBlock(nn.Module):
    """Pre-activation wide block, as in Madry et al.'s and TRADES' WRN-34-10."""

    def __init__(self, act: ActivationFactory, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = act(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.projection = (nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
                           if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(out)
        return self.conv2(self.act2(self.bn2(self.conv1(out)))) + shortcut


class WideResNet(StagedNet):
    stage_names = ("stem", "layer1", "layer2", "layer3")

    def __init__(self, act: ActivationFactory, depth: int, widen: int, num_classes: int,
                 in_channels: int, normalize: Normalize) -> None:
        super().__init__()
        per_stage = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.normalize = normalize
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False))
        in_planes = 16
        for index, planes in enumerate(widths, start=1):
            layers = []
            for position in range(per_stage):
                stride = 2 if index > 1 and position == 0 else 1
                layers.append(WideBlock(act, in_planes, planes, stride))
                in_planes = planes
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.layer3.append(nn.Sequential(nn.BatchNorm2d(in_planes), act(in_planes)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.stem(self.normalize(x)))))
        return self.fc(self.pool(out).flatten(1))
