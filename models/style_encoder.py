"""StyleShot's style-aware encoder (docs/design/styleshot.md section 1).

Three CNN "experts", one per patch size, turn the 8 high (128 px), 16 middle (64 px) and 32 low
(32 px) patches of a style image into 1280-d tokens; a learned class token opens each group; the
59 tokens with learned positions run through CLIP ViT-H's blocks, and the three class tokens come
out projected to 1024-d. Key names match the published `style_aware_encoder.bin`.
"""

import torch
from torch import nn

from .vision_tower import HIDDEN, VisionTower

PATCH_SIZES = (128, 64, 32)  # high, middle, low: cnn.0, cnn.1, cnn.2
PATCHES_PER_IMAGE = (8, 16, 32)
TOKENS = sum(PATCHES_PER_IMAGE) + len(PATCHES_PER_IMAGE)  # 59
CLASS_TOKEN_POSITIONS = (0, 9, 26)  # where each group's class token sits in the 59

# (in, out, downsample) of each ResnetBlock, per expert; deeper for larger patches so that each
# ends on a 2x2 map.
EXPERT_BLOCKS = (
    ((320, 320, False), (320, 640, False), (640, 640, True), (640, 640, True), (640, 1280, True), (1280, 1280, False)),
    ((320, 320, False), (320, 640, False), (640, 640, True), (640, 1280, True), (1280, 1280, False)),
    ((320, 320, False), (320, 640, False), (640, 1280, True), (1280, 1280, False)),
)


class ResnetBlock(nn.Module):
    """T2I-Adapter's block as StyleShot builds it (sk=True, use_conv=False, ksize=1): optional
    2x2 average-pool, a 1x1 conv when the width changes, then x + conv1x1(relu(conv3x3(x)))."""

    def __init__(self, in_channels, out_channels, down):
        super().__init__()
        self.down = nn.AvgPool2d(2, 2) if down else None
        self.in_conv = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.block1 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.block2 = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x):
        if self.down is not None:
            x = self.down(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(torch.relu(self.block1(x)))


class Expert(nn.Module):
    """Patches [N, 3, S, S] in [-1, 1] -> tokens [N, 1280]."""

    def __init__(self, blocks):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(8)
        self.conv_in = nn.Conv2d(192, 320, 3, 1, 1)
        self.body = nn.Sequential(*(ResnetBlock(*block) for block in blocks))
        self.pool = nn.AvgPool2d(2, 2)
        self.adapter = nn.Linear(1280, 1280)

    def forward(self, patches):
        x = self.body(self.conv_in(self.unshuffle(patches)))
        return self.adapter(self.pool(x).flatten(1))


class StyleAwareEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.image_encoder = VisionTower()
        self.cnn = nn.ModuleList(Expert(blocks) for blocks in EXPERT_BLOCKS)
        self.style_embeddings = nn.ParameterList(nn.Parameter(torch.zeros(HIDDEN)) for _ in PATCH_SIZES)
        self.position_embedding = nn.Embedding(TOKENS, HIDDEN)

    def forward(self, high, middle, low):
        """Patch groups, image-major ([B*8, 3, 128, 128], [B*16, 3, 64, 64], [B*32, 3, 32, 32])
        -> style embeddings [B, 3, 1024] (high, middle, low)."""
        batch = high.shape[0] // PATCHES_PER_IMAGE[0]
        groups = []
        for expert, class_token, patches in zip(self.cnn, self.style_embeddings, (high, middle, low)):
            groups.append(class_token.expand(batch, 1, -1))
            groups.append(expert(patches).view(batch, -1, HIDDEN))
        tokens = torch.cat(groups, dim=1) + self.position_embedding.weight
        return self.image_encoder(tokens, CLASS_TOKEN_POSITIONS)
