"""InST's attention-based inversion network (docs/design/inst.md 2.1-2.4), with the file's key names.

`Attentions(dim=768, n_heads=8, d_head=64)` of zyxElsa/InST: a self-attention, a cross-attention
whose keys and values come from the network's input, and a final projection; no residuals, no
norms. Dropout (p=0.05 in training) is left out: the token is computed in eval mode.

Fed InST's sequence of one 768-d CLIP image embedding, every softmax runs over a single key, so
the output is W_net (W_out2 W_v2 e + b_out2) + b_net: only 5 of the 12 tensors matter. The full
network is built anyway, so the files load strictly and any sequence length computes.
"""

from torch import nn

DIM = 768
HEADS = 8
HEAD_DIM = 64


class CrossAttention(nn.Module):
    """ldm's CrossAttention: q from x, k and v from `context` (x itself when None)."""

    def __init__(self, dim=DIM, heads=HEADS, head_dim=HEAD_DIM):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))  # index 0, as in the file ("to_out.0.weight")

    def forward(self, x, context=None):
        """x [B, N, dim], context [B, M, dim] -> [B, N, dim]."""
        context = x if context is None else context

        def split(t):
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, heads, tokens, head_dim]

        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.to_out((weights @ v).transpose(1, 2).flatten(2))


class InversionNetwork(nn.Module):
    """InST's `Attentions`: image embedding sequence [B, N, 768] -> token embeddings [B, N, 768]."""

    def __init__(self):
        super().__init__()
        self.attn1 = CrossAttention()
        self.attn2 = CrossAttention()
        # Sequential(Dropout, Linear) in the file: keep index 1 so the keys read "net.1.weight"
        self.net = nn.Sequential(nn.Identity(), nn.Linear(DIM, DIM))

    def forward(self, x):
        return self.net(self.attn2(self.attn1(x), x))

    def token(self, embedding):
        """The style token for one image embedding [768] (or a learned input vector): [1, 768]."""
        return self(embedding.reshape(1, 1, DIM).to(self.net[1].weight)).reshape(1, DIM)
