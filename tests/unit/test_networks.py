"""The HED and lineart networks: published layouts, parameter counts, shapes, and forwards equal to
functional renderings of the published architectures."""

import pytest
import torch

from fixtures import annotators, reference
from style_suite.models.hed_network import HEDNetwork
from style_suite.models.lineart_generator import LineartGenerator
from style_suite.preprocessors.lineart import lineart_levels


def layout(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_hed_has_the_published_layout_and_size():
    net = HEDNetwork()
    assert layout(net) == annotators.hed_layout()
    assert len(layout(net)) == 37
    assert sum(p.numel() for p in net.parameters()) == 14_716_168


def test_lineart_has_the_published_layout_and_size():
    net = LineartGenerator()
    assert layout(net) == annotators.lineart_layout()
    assert len(layout(net)) == 24
    assert sum(p.numel() for p in net.parameters()) == 4_290_945


def test_hed_side_outputs_floor_odd_sizes():
    net = HEDNetwork().eval()
    with torch.no_grad():
        outputs = net(torch.rand(2, 3, 67, 45) * 255)
    assert [tuple(o.shape) for o in outputs] == [
        (2, 1, 67, 45),
        (2, 1, 33, 22),
        (2, 1, 16, 11),
        (2, 1, 8, 5),
        (2, 1, 4, 2),
    ]


def test_hed_forward_equals_the_published_architecture():
    sd = annotators.hed_state_dict(seed=3)
    net = HEDNetwork()
    net.load_state_dict(sd)
    x = torch.rand(2, 3, 40, 56) * 255
    with torch.no_grad():
        ours, expected = net(x), reference.hed_projections(sd, x)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_lineart_forward_equals_the_published_architecture():
    sd = annotators.lineart_state_dict(seed=4)
    net = LineartGenerator()
    net.load_state_dict(sd)
    x = torch.rand(2, 3, 32, 44)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference.lineart_forward(sd, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(32, 48), (33, 47), (30, 50), (29, 31)])
def test_lineart_returns_the_input_size_for_any_size(size):
    net = LineartGenerator().eval()
    with torch.no_grad():
        levels = lineart_levels(net, torch.rand(1, 3, *size) * 255)
    assert tuple(levels.shape) == (1, *size)
    assert levels.min() >= 0 and levels.max() <= 255 and torch.equal(levels, levels.floor())
