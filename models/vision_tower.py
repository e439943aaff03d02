"""The transformer of CLIP ViT-H/14's vision tower, with transformers' key names.

StyleShot feeds its own tokens through these blocks (its CNN experts replace CLIP's patch
embedding), so only the blocks, the two layer norms and the projection are built here; the keys
match `CLIPVisionModelWithProjection` (`vision_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
"""

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN = 1280
LAYERS = 32
HEADS = 16
MLP = 5120
PROJECTION = 1024
LAYER_NORM_EPS = 1e-5


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        """x: [B, N, dim] -> [B, N, dim]; no mask (every token sees every token)."""
        b, n, dim = x.shape

        def split(t):
            return t.view(b, n, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, dim))


class MLPBlock(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact erf GELU (ViT-H's "gelu", not quick_gelu)


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLPBlock(dim, mlp)
        self.layer_norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, dim, heads, mlp, layers):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, mlp) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class VisionModel(nn.Module):
    def __init__(self, dim, heads, mlp, layers):
        super().__init__()
        self.pre_layrnorm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # sic: transformers' spelling
        self.encoder = Encoder(dim, heads, mlp, layers)
        self.post_layernorm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class VisionTower(nn.Module):
    """`vision_model` (pre-norm, blocks, post-norm) and the bias-free `visual_projection`."""

    def __init__(self, dim=HIDDEN, heads=HEADS, mlp=MLP, layers=LAYERS, projection=PROJECTION):
        super().__init__()
        self.vision_model = VisionModel(dim, heads, mlp, layers)
        self.visual_projection = nn.Linear(dim, projection, bias=False)

    def forward(self, tokens: torch.Tensor, pooled_positions) -> torch.Tensor:
        """tokens: [B, N, dim] embeddings -> [B, len(pooled_positions), projection]: the tokens at
        `pooled_positions` after all blocks, post-layernorm and projection."""
        model = self.vision_model
        hidden = model.encoder(model.pre_layrnorm(tokens))
        return self.visual_projection(model.post_layernorm(hidden[:, list(pooled_positions)]))
