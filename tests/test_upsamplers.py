"""Upsamplers: exact output size, exact placement from stride and offset, FCN's bilinear filter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


def build(registry, name, num_classes, stride, offset, **params):
    return registry.get("upsampler", name).build(num_classes, stride, offset, params=params)


def coordinate_scores(stride: int, offset: float, h: int, w: int) -> torch.Tensor:
    """Two score channels holding the input row / column each score pixel lies on."""
    rows = stride * torch.arange(h, dtype=torch.float64) + offset
    cols = stride * torch.arange(w, dtype=torch.float64) + offset
    return torch.stack([rows[:, None].expand(h, w), cols[None, :].expand(h, w)])[None]


@pytest.mark.parametrize("stride", [2, 8, 32])
def test_frozen_transposed_bilinear_is_bilinear_interpolation(registry, stride):
    up = build(registry, "transposed_bilinear", 3, stride, (stride - 1) / 2)
    assert not up.weight.requires_grad
    scores = torch.randn(2, 3, 5, 7)
    size = (5 * stride, 7 * stride)
    out = up(scores, size)
    reference = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    s = stride
    torch.testing.assert_close(out[..., s:-s, s:-s], reference[..., s:-s, s:-s], atol=1e-5, rtol=0)


def test_transposed_bilinear_holds_fcn_final_layer(registry):
    up = build(registry, "transposed_bilinear", 21, 8, -23.5)
    assert tuple(up.weight.shape) == (21, 21, 16, 16)
    off_diagonal = up.weight.detach().clone()
    off_diagonal[range(21), range(21)] = 0
    assert off_diagonal.abs().sum() == 0
    assert up.crop == 31  # FCN-8s's Caffe crop
    trainable = build(registry, "transposed_bilinear", 21, 8, -23.5, trainable=True)
    assert trainable.weight.requires_grad


CASES = [
    # (upsampler params, stride, offset) with whole-pixel crops, so placement is exact
    ("transposed_bilinear", {}, 8, -23.5),  # FCN-8s on VGG16 padded by 100
    ("transposed_bilinear", {}, 16, -11.5),  # FCN-16s
    ("transposed_bilinear", {}, 32, 12.5),  # FCN-32s
    ("transposed_bilinear", {}, 4, 1.5),
    ("interpolate", {}, 8, 3.5),
    ("interpolate", {}, 8, -23.5),
    ("interpolate", {}, 32, 12.5),
    ("interpolate", {"align_corners": True}, 8, 0.0),  # DeepLab
    ("interpolate", {"align_corners": True}, 8, -5.0),
    ("interpolate", {"align_corners": True}, 16, 7.0),
]


@pytest.mark.parametrize(("name", "params", "stride", "offset"), CASES)
@pytest.mark.parametrize("size", [(333, 497), (64, 64)])
def test_score_pixel_lands_on_its_input_pixel(registry, name, params, stride, offset, size):
    h, w = size
    # Two more score pixels before the image and beyond it keep the image off the borders.
    start = offset - 2 * stride
    scores = coordinate_scores(
        stride, start, int((h - start) // stride) + 3, int((w - start) // stride) + 3
    )
    up = build(registry, name, 2, stride, start, **params).double()
    out = up(scores, size)
    assert out.shape == (1, 2, h, w)
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    torch.testing.assert_close(out[0, 0], rows, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, 1], cols, atol=1e-6, rtol=0)


def test_align_corners_samples_scores_exactly(registry):
    stride, offset = 8, 0.0
    scores = torch.randn(1, 4, 6, 9)
    out = build(registry, "interpolate", 4, stride, offset, align_corners=True)(scores, (41, 65))
    torch.testing.assert_close(out[..., ::stride, ::stride], scores, atol=1e-6, rtol=0)
    midway = (scores[..., :-1, :] + scores[..., 1:, :]) / 2
    torch.testing.assert_close(out[..., 4:-1:stride, ::stride], midway, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["transposed_bilinear", "interpolate"])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (333, 497), (500, 375)])
@pytest.mark.parametrize(("stride", "offset"), [(1, 0.0), (8, 0.0), (8, -23.5), (32, 12.5)])
def test_output_has_exactly_the_requested_size(registry, name, size, stride, offset):
    scores = torch.randn(1, 3, 5, 4)
    out = build(registry, name, 3, stride, offset)(scores, size)
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


def test_replicates_the_border_where_scores_do_not_reach(registry):
    scores = torch.arange(4.0).reshape(1, 1, 2, 2)
    out = build(registry, "interpolate", 1, 1, 0.0)(scores, (4, 4))
    expected = torch.tensor([[0.0, 1, 1, 1], [2, 3, 3, 3], [2, 3, 3, 3], [2, 3, 3, 3]])
    torch.testing.assert_close(out[0, 0], expected)


def test_half_pixel_crops_round_half_up(registry):
    # ResNet-style offset 0 with FCN's even 2s kernel: (2s - 1) / 2 = 7.5 -> 8.
    assert build(registry, "transposed_bilinear", 2, 8, 0.0).crop == 8
    assert build(registry, "interpolate", 2, 8, 0.0).crop == 4  # 3.5 -> 4
