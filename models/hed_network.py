"""The ControlNet 1.1 HED network: lllyasviel's Apache-2.0 re-implementation (`ControlNetHED_Apache2`).

Keys and shapes match `ControlNetHED.pth` exactly, so the published file loads strictly.
The network is RGB, takes values 0..255 (no /255, no ImageNet normalisation: the learned
`norm` offset is the only normalisation) and returns five 1-channel logit maps
(docs/design/annotators.md 1). Its edge maps are in preprocessors/hed.py.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConvBlock(nn.Module):
    """Optional 2x2 max-pool, `n` 3x3 conv+ReLU, and a 1x1 side-output `projection`."""

    def __init__(self, in_channels: int, out_channels: int, n_convs: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
        layers += [nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(n_convs - 1)]
        self.convs = nn.Sequential(*layers)
        self.projection = nn.Conv2d(out_channels, 1, 1)

    def forward(self, x):
        if self.downsample:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class HEDNetwork(nn.Module):
    """`ControlNetHED_Apache2`: five VGG-like stages, each with a side output. 14.7 M parameters."""

    def __init__(self):
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.block1 = DoubleConvBlock(3, 64, 2, downsample=False)
        self.block2 = DoubleConvBlock(64, 128, 2, downsample=True)
        self.block3 = DoubleConvBlock(128, 256, 3, downsample=True)
        self.block4 = DoubleConvBlock(256, 512, 3, downsample=True)
        self.block5 = DoubleConvBlock(512, 512, 3, downsample=True)

    def forward(self, x):
        """x: [B, 3, H, W] RGB in 0..255 -> five logit maps [B, 1, H/2^i, W/2^i] (floored), i = 0..4."""
        h = x - self.norm
        projections = []
        for block in (self.block1, self.block2, self.block3, self.block4, self.block5):
            h, projection = block(h)
            projections.append(projection)
        return projections
