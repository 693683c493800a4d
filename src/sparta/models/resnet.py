"""CIFAR-style ResNets (3x3 stem, no max-pool): ResNet-18/34 and PreAct ResNet-18.

He et al. 2016 and "Identity mappings in deep residual networks"; the variants used in
adversarial training papers (Madry et al., Rice et al.). Work for 28x28 inputs too.
"""

from __future__ import annotations

import torch
from torch import nn

from sparta.models.common import ActivationFactory, Normalize, StagedNet


def _shortcut(in_planes: int, planes: int, stride: int, norm: bool) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    conv = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(planes)) if norm else conv


class BasicBlock(nn.Module):
    def __init__(self, act: ActivationFactory, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride, norm=True)
        self.act2 = act(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, act: ActivationFactory, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = act(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.needs_projection = stride != 1 or in_planes != planes
        self.shortcut = _shortcut(in_planes, planes, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out) if self.needs_projection else x
        out = self.conv2(self.act2(self.bn2(self.conv1(out))))
        return out + shortcut


def make_stage(block: type[nn.Module], act: ActivationFactory, in_planes: int, planes: int, count: int,
               stride: int) -> nn.Sequential:
    """`count` blocks at one resolution; the first changes width and stride."""
    return nn.Sequential(*(block(act, in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                           for i in range(count)))


class ResNet(StagedNet):
    stage_names = ("stem", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, act: ActivationFactory, blocks: tuple[int, ...], num_classes: int,
                 in_channels: int, normalize: Normalize, preact: bool = False) -> None:
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        self.normalize = normalize
        stem: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)]
        if not preact:
            stem += [nn.BatchNorm2d(64), act(64)]
        self.stem = nn.Sequential(*stem)
        widths = (64, 128, 256, 512)
        for index, (planes, count) in enumerate(zip(widths, blocks), start=1):
            in_planes = widths[max(0, index - 2)]
            setattr(self, f"layer{index}", make_stage(block, act, in_planes, planes, count, 1 if index == 1 else 2))
        # PreAct nets end with BN + activation; it belongs to the last stage.
        if preact:
            self.layer4.append(nn.Sequential(nn.BatchNorm2d(512), act(512)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.pool(out).flatten(1))
