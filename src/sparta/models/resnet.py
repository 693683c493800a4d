"""CIFAR-style ResNets (3x3 stem, no max-pool): ResNet-18/34, PreAct ResNet-18, ResNet-20.

He et al. 2016 and "Identity mappings in deep residual networks"; the variants used in
adversarial training papers (Madry et al., Rice et al.). ResNet-20 is He et al.'s
three-stage CIFAR net (16/32/64 wide, 0.27M parameters): a second small CNN, cheap
enough for cross-CNN experiments on a CPU. All work for 28x28 inputs too.
"""

from __future__ import annotations

import torch
from torch import nn

from sparta.models.common import Normalize, SiteActivation, StagedNet


def _shortcut(in_planes: int, planes: int, stride: int, norm: bool) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    conv = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(planes)) if norm else conv


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN, an activation after each, the second after the sum."""

    def __init__(self, act: SiteActivation, in_planes: int, planes: int, stride: int) -> None:
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
    """The pre-activation block: BN and activation before each conv; the shortcut is added last."""

    def __init__(self, act: SiteActivation, in_planes: int, planes: int, stride: int) -> None:
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


def make_stage(
    block: type[nn.Module], act: SiteActivation, in_planes: int, planes: int, count: int, stride: int
) -> nn.Sequential:
    """`count` blocks at one resolution; the first changes width and stride."""
    return nn.Sequential(
        *(block(act, in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(count))
    )


class ResNet(StagedNet):
    """A stem, one stage per entry of `blocks` (`widths` wide; each after the first halves
    the resolution), global average pooling and a linear head."""

    def __init__(
        self,
        act: SiteActivation,
        blocks: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        normalize: Normalize,
        preact: bool = False,
        widths: tuple[int, ...] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"one width per stage: {widths} for {blocks}")
        block = PreActBlock if preact else BasicBlock
        self.normalize = normalize
        stem: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        if not preact:
            stem += [nn.BatchNorm2d(widths[0]), act(widths[0])]
        self.stem = nn.Sequential(*stem)
        self.stage_names = ("stem", *(f"layer{i}" for i in range(1, len(blocks) + 1)))
        for index, (planes, count) in enumerate(zip(widths, blocks), start=1):
            in_planes = widths[max(0, index - 2)]
            setattr(self, f"layer{index}", make_stage(block, act, in_planes, planes, count, 1 if index == 1 else 2))
        last = getattr(self, self.stage_names[-1])
        # PreAct nets end with BN + activation; it belongs to the last stage.
        if preact:
            last.append(nn.Sequential(nn.BatchNorm2d(widths[-1]), act(widths[-1])))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(self.normalize(x))
        for name in self.stage_names[1:]:
            out = getattr(self, name)(out)
        return self.fc(self.pool(out).flatten(1))
