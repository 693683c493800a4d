"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the usual CIFAR PGD-AT benchmark model.

Its blocks are the pre-activation blocks of PreAct ResNet, made wide.
"""

from __future__ import annotations

import torch
from torch import nn

from sparta.models.common import ActivationFactory, Normalize, StagedNet
from sparta.models.resnet import PreActBlock


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
                layers.append(PreActBlock(act, in_planes, planes, stride))
                in_planes = planes
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.layer3.append(nn.Sequential(nn.BatchNorm2d(in_planes), act(in_planes)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.stem(self.normalize(x)))))
        return self.fc(self.pool(out).flatten(1))
