"""The informative-drawings line generator used by ControlNet 1.1 and StyleShot for "Lineart".

`Generator(input_nc=3, output_nc=1, n_residual_blocks=3)`; keys match `sk_model.pth` (fine) and
`sk_model2.pth` (coarse) exactly. Input RGB in 0..1; output a sigmoid map where lines are dark
(docs/design/annotators.md 3). Its line maps are in preprocessors/lineart.py.
"""

from torch import nn


def _conv_norm_relu(conv):
    return [conv, nn.InstanceNorm2d(conv.out_channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class LineartGenerator(nn.Module):
    """Encoder (7x7, two stride-2 convs), 3 residual blocks, decoder (two transposed convs, 7x7)."""

    def __init__(self, n_residual_blocks: int = 3):
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), *_conv_norm_relu(nn.Conv2d(3, 64, 7)))
        self.model1 = nn.Sequential(
            *_conv_norm_relu(nn.Conv2d(64, 128, 3, stride=2, padding=1)),
            *_conv_norm_relu(nn.Conv2d(128, 256, 3, stride=2, padding=1)),
        )
        self.model2 = nn.Sequential(*[ResidualBlock(256) for _ in range(n_residual_blocks)])
        self.model3 = nn.Sequential(
            *_conv_norm_relu(nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1)),
            *_conv_norm_relu(nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1)),
        )
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

    def forward(self, x):
        """x: [B, 3, H, W] RGB in 0..1 -> [B, 1, H', W'] in 0..1 (lines dark), each side rounded up
        to a multiple of 4 by the stride-2 convolutions and their transposes."""
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))
