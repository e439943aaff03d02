"""The diffusers key layout of an SD1.5 ControlNet (`ControlNetModel.from_unet(sd15)`), which is how
`ip.bin` stores StyleShot's content-fusion encoder under `controlnet.` (docs/design/styleshot.md 2.4)."""

from functools import cache

CONTEXT_DIM = 768
TIME_DIM = 1280
COND_CHANNELS = (16, 32, 96, 256)


def _conv(layout, name, out, inp, k):
    layout[f"{name}.weight"] = (out, inp, k, k)
    layout[f"{name}.bias"] = (out,)


def _linear(layout, name, out, inp, bias=True):
    layout[f"{name}.weight"] = (out, inp)
    if bias:
        layout[f"{name}.bias"] = (out,)


def _norm(layout, name, channels):
    layout[f"{name}.weight"] = (channels,)
    layout[f"{name}.bias"] = (channels,)


def _resnet(layout, name, inp, out):
    _norm(layout, f"{name}.norm1", inp)
    _conv(layout, f"{name}.conv1", out, inp, 3)
    _linear(layout, f"{name}.time_emb_proj", out, TIME_DIM)
    _norm(layout, f"{name}.norm2", out)
    _conv(layout, f"{name}.conv2", out, out, 3)
    if inp != out:
        _conv(layout, f"{name}.conv_shortcut", out, inp, 1)


def _transformer(layout, name, channels):
    _norm(layout, f"{name}.norm", channels)
    _conv(layout, f"{name}.proj_in", channels, channels, 1)
    block = f"{name}.transformer_blocks.0"
    for i in (1, 2, 3):
        _norm(layout, f"{block}.norm{i}", channels)
    for attn, context in (("attn1", channels), ("attn2", CONTEXT_DIM)):
        _linear(layout, f"{block}.{attn}.to_q", channels, channels, bias=False)
        _linear(layout, f"{block}.{attn}.to_k", channels, context, bias=False)
        _linear(layout, f"{block}.{attn}.to_v", channels, context, bias=False)
        _linear(layout, f"{block}.{attn}.to_out.0", channels, channels)
    _linear(layout, f"{block}.ff.net.0.proj", channels * 8, channels)  # GEGLU: two halves
    _linear(layout, f"{block}.ff.net.2", channels, channels * 4)
    _conv(layout, f"{name}.proj_out", channels, channels, 1)


@cache
def controlnet_layout() -> dict:
    """{key: shape} of the 340 tensors."""
    layout = {}
    _conv(layout, "conv_in", 320, 4, 3)
    _linear(layout, "time_embedding.linear_1", TIME_DIM, 320)
    _linear(layout, "time_embedding.linear_2", TIME_DIM, TIME_DIM)
    _conv(layout, "controlnet_cond_embedding.conv_in", COND_CHANNELS[0], 3, 3)
    for i, (inp, out) in enumerate(zip(COND_CHANNELS[:-1], COND_CHANNELS[1:])):
        _conv(layout, f"controlnet_cond_embedding.blocks.{2 * i}", inp, inp, 3)
        _conv(layout, f"controlnet_cond_embedding.blocks.{2 * i + 1}", out, inp, 3)
    _conv(layout, "controlnet_cond_embedding.conv_out", 320, COND_CHANNELS[-1], 3)

    zero_convs = [320]
    channels = 320
    for block, out in enumerate((320, 640, 1280, 1280)):
        for j in range(2):
            _resnet(layout, f"down_blocks.{block}.resnets.{j}", channels if j == 0 else out, out)
            if block < 3:
                _transformer(layout, f"down_blocks.{block}.attentions.{j}", out)
            zero_convs.append(out)
        if block < 3:
            _conv(layout, f"down_blocks.{block}.downsamplers.0.conv", out, out, 3)
            zero_convs.append(out)
        channels = out
    for i, width in enumerate(zero_convs):
        _conv(layout, f"controlnet_down_blocks.{i}", width, width, 1)

    _resnet(layout, "mid_block.resnets.0", 1280, 1280)
    _transformer(layout, "mid_block.attentions.0", 1280)
    _resnet(layout, "mid_block.resnets.1", 1280, 1280)
    _conv(layout, "controlnet_mid_block", 1280, 1280, 1)
    return layout
