"""StyleShot's decoupled cross-attention (docs/design/styleshot.md section 3) against diffusers'
Attention + IPAdapterAttnProcessor2_0, and the per-chunk routing of style tokens in a CFG batch."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, IPAdapterAttnProcessor2_0

from fixtures.reference import sdpa_attention
from style_suite.models.style_adapter import ADAPTER_LAYERS, StyleShotAdapter, StyleTokens, route, style_attention

HEADS = 8
LAYER_OF_WIDTH = {320: 1, 640: 5, 1280: 31}  # adapter indices (input 1, input 4, middle)


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    return StyleShotAdapter().eval().requires_grad_(False)


def diffusers_layer(adapter, index, width, scale, seed):
    torch.manual_seed(seed)
    attn = Attention(query_dim=width, cross_attention_dim=768, heads=HEADS, dim_head=width // HEADS)
    processor = IPAdapterAttnProcessor2_0(hidden_size=width, cross_attention_dim=768, num_tokens=(6,), scale=scale)
    layer = adapter.adapter_modules[str(index)]
    processor.to_k_ip[0].weight.data.copy_(layer.to_k_ip.weight)
    processor.to_v_ip[0].weight.data.copy_(layer.to_v_ip.weight)
    attn.set_processor(processor)
    return attn.eval().requires_grad_(False)


def ours(attn, adapter, index, x, text, style, cond_or_uncond, scale):
    """The pack's math as ComfyUI drives it: q/k/v from the layer's own projections, text
    attention + scale * style attention, then to_out."""
    q, k, v = attn.to_q(x), attn.to_k(text), attn.to_v(text)
    out = sdpa_attention(q, k, v, HEADS) + scale * style_attention(
        q, adapter.keys_values(index, style), cond_or_uncond, HEADS, sdpa_attention
    )
    return attn.to_out[1](attn.to_out[0](out))


@pytest.mark.parametrize("width", [320, 640, 1280])
@pytest.mark.parametrize("scale", [0.0, 0.35, 1.0, 1.8])
def test_decoupled_attention_matches_diffusers_ip_adapter(adapter, width, scale):
    index = LAYER_OF_WIDTH[width]
    assert ADAPTER_LAYERS[index][1] == width
    attn = diffusers_layer(adapter, index, width, scale, seed=width)
    generator = torch.Generator().manual_seed(width)
    x = torch.randn(2, 64, width, generator=generator)
    text = torch.randn(2, 77, 768, generator=generator)
    style = StyleTokens(torch.randn(1, 6, 768, generator=generator), torch.randn(1, 6, 768, generator=generator))
    with torch.no_grad():
        # CFG batch [cond, uncond]: diffusers gets each row's style tokens explicitly
        tokens = torch.cat([style.cond, style.uncond])
        expected = attn(x, encoder_hidden_states=(text, [tokens]))
        got = ours(attn, adapter, index, x, text, style, [0, 1], scale)
    assert expected.shape == got.shape == (2, 64, width)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if scale:
        # the style part is really there (and would be missed by text attention alone)
        with torch.no_grad():
            text_only = attn.to_out[0](sdpa_attention(attn.to_q(x), attn.to_k(text), attn.to_v(text), HEADS))
        assert (expected - text_only).abs().max() > 1e-3


def test_one_softmax_over_83_tokens_would_not_match(adapter):
    """The comparison above is sensitive to the decoupling: joint attention over text + style differs."""
    width, index = 320, 1
    attn = diffusers_layer(adapter, index, width, 1.0, seed=3)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, width, generator=generator)
    text = torch.randn(1, 77, 768, generator=generator)
    tokens = torch.randn(1, 6, 768, generator=generator)
    layer = adapter.adapter_modules[str(index)]
    with torch.no_grad():
        expected = attn(x, encoder_hidden_states=(text, [tokens]))
        k = torch.cat([attn.to_k(text), layer.to_k_ip(tokens)], 1)
        v = torch.cat([attn.to_v(text), layer.to_v_ip(tokens)], 1)
        joint = attn.to_out[0](sdpa_attention(attn.to_q(x), k, v, HEADS))
        got = ours(attn, adapter, index, x, text, StyleTokens(tokens, tokens), [0], 1.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (joint - expected).abs().max() > 1e-2


def test_per_image_style_in_a_cfg_batch_matches_diffusers(adapter):
    """Two latents with two style images, cond chunk first then uncond: each row gets its own."""
    width, index = 640, 19
    attn = diffusers_layer(adapter, index, width, 0.8, seed=4)
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(4, 32, width, generator=generator)
    text = torch.randn(4, 77, 768, generator=generator)
    style = StyleTokens(torch.randn(2, 6, 768, generator=generator), torch.randn(1, 6, 768, generator=generator))
    with torch.no_grad():
        rows = torch.cat([style.cond, style.uncond, style.uncond])
        expected = attn(x, encoder_hidden_states=(text, [rows]))
        got = ours(attn, adapter, index, x, text, style, [0, 1], 0.8)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_sdpa_attention_is_plain_multi_head_attention():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 80, generator=generator) for n in (5, 7, 7))
    out = sdpa_attention(q, k, v, 4)
    for h in range(4):
        s = slice(20 * h, 20 * h + 20)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 20**0.5, dim=-1)
        torch.testing.assert_close(out[..., s], weights @ v[..., s], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- routing by cond_or_uncond


def marked(values):
    """[len(values), 6, 4] where row i is filled with values[i]: distinct, recognisable token sets."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None].expand(-1, 6, 4).clone()


def row_marks(routed):
    assert (routed == routed[:, :1, :1]).all()  # each row is still one mark
    return routed[:, 0, 0].tolist()


COND, UNCOND = marked([10.0, 11.0]), marked([-1.0])


@pytest.mark.parametrize(
    "cond_or_uncond, expected",
    [
        ([0, 1], [10, 11, -1, -1]),  # ComfyUI's usual CFG batch
        ([1, 0], [-1, -1, 10, 11]),  # uncond first
        ([0], [10, 11]),  # cfg 1: no uncond pass
        ([1], [-1, -1]),
        ([0, 0, 1], [10, 11, 10, 11, -1, -1]),  # several conds (area/combined conditioning)
    ],
)
def test_route_gives_each_chunk_its_tokens_per_row(cond_or_uncond, expected):
    assert row_marks(route(COND, UNCOND, cond_or_uncond, rows=2)) == expected


def test_route_broadcasts_a_single_style():
    assert row_marks(route(marked([7.0]), UNCOND, [0, 1], rows=3)) == [7, 7, 7, -1, -1, -1]
    assert row_marks(route(marked([7.0]), UNCOND, [1, 0, 0], rows=1)) == [-1, 7, 7]


def test_route_refuses_a_style_count_that_fits_no_row_count():
    with pytest.raises(ValueError, match="the style has 2 token sets but the latent batch has 3 images"):
        route(COND, UNCOND, [0, 1], rows=3)
    with pytest.raises(ValueError, match="encode 1 style image .* or as many style images as latents"):
        route(marked([1.0, 2.0, 3.0]), UNCOND, [0], rows=2)


def test_style_attention_routes_uncond_tokens_to_the_uncond_chunk(adapter):
    """Each chunk's rows equal attention over the tokens that chunk should get, and nothing else."""
    index = 3
    generator = torch.Generator().manual_seed(5)
    cond = torch.randn(2, 6, 768, generator=generator)
    uncond = torch.randn(1, 6, 768, generator=generator)
    q = torch.randn(6, 10, 320, generator=generator)  # chunks [0, 1, 0] of 2 rows
    out = style_attention(q, adapter.keys_values(index, StyleTokens(cond, uncond)), [0, 1, 0], HEADS, sdpa_attention)
    layer = adapter.adapter_modules[str(index)]

    def expected(row, tokens):
        return sdpa_attention(q[row : row + 1], layer.to_k_ip(tokens[None]), layer.to_v_ip(tokens[None]), HEADS)[0]

    per_row = [cond[0], cond[1], uncond[0], uncond[0], cond[0], cond[1]]
    for row, tokens in enumerate(per_row):
        torch.testing.assert_close(out[row], expected(row, tokens), rtol=1e-5, atol=1e-5)
    assert (out[2] - expected(2, cond[0])).abs().max() > 1e-3  # the uncond rows really differ


def test_style_attention_in_half_precision_follows_q(adapter):
    generator = torch.Generator().manual_seed(6)
    q = torch.randn(2, 10, 1280, generator=generator)
    style = StyleTokens(torch.randn(1, 6, 768, generator=generator), torch.randn(1, 6, 768, generator=generator))
    full = style_attention(q, adapter.keys_values(9, style), [0, 1], HEADS, sdpa_attention)
    seen = {}

    def attention(q, k, v, heads):
        seen["dtypes"] = (q.dtype, k.dtype, v.dtype)
        return sdpa_attention(q.float(), k.float(), v.float(), heads).to(q.dtype)

    half = style_attention(q.to(torch.bfloat16), adapter.keys_values(9, style), [0, 1], HEADS, attention)
    assert seen["dtypes"] == (torch.bfloat16,) * 3
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
