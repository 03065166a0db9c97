"""Batched augmentation: crop boxes, resampling, colour ops vs torchvision, RandAugment ops vs Pillow."""

from __future__ import annotations

import math

import pytest
import torch

from bamco_fast.pretraining import CLIP_MEAN, CLIP_STD, AugmentConfig, augment_views, evaluation_views
from bamco_fast.pretraining.augment import (
    center_crop_boxes,
    color_jitter,
    crop_resize,
    normalize,
    random_resized_crop_boxes,
)
from bamco_fast.pretraining.randaugment import RANDAUGMENT_OPS, _apply, rand_augment


def _smooth_images(n: int, r: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, r), torch.linspace(0, 1, r), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2])
    return torch.stack([(base * (0.5 + i / (2 * n)) * 255).round() for i in range(n)]).to(torch.uint8)


def test_random_resized_crop_boxes_follow_the_rule():
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[60, 80], [80, 60], [64, 64]]).repeat(200, 1)
    boxes = random_resized_crop_boxes(sizes, (0.08, 1.0), (3 / 4, 4 / 3), g)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert torch.all(boxes[:, :2] >= 0)
    assert torch.all(boxes[:, 2] <= sizes[:, 1]) and torch.all(boxes[:, 3] <= sizes[:, 0])
    area = w * h / (sizes[:, 0] * sizes[:, 1])
    assert area.min() >= 0.05 and area.max() <= 1.0
    assert (w / h).min() >= 0.6 and (w / h).max() <= 1.6  # rounding of small boxes widens the range a bit
    assert torch.equal(boxes, boxes.round())  # integer pixel boxes, as torchvision
    # impossible request -> whole image clamped to the ratio range, centred
    fallback = random_resized_crop_boxes(torch.tensor([[10, 100]]), (0.9, 1.0), (1.0, 1.0), g)
    assert fallback.tolist() == [[45.0, 0.0, 55.0, 10.0]]


def test_crop_resize_identity_flip_and_eval_view_matches_torchvision():
    from torchvision.transforms.v2 import functional as TF

    images = _smooth_images(2, 48)
    full = torch.tensor([[0.0, 0.0, 48.0, 48.0]] * 2)
    out = crop_resize(images, torch.tensor([1, 0]), full, 48)
    assert torch.allclose(out, images[[1, 0]].float() / 255, atol=1e-6)
    assert torch.allclose(crop_resize(images.float(), torch.tensor([1, 0]), full, 48), out)  # float cache
    sizes = torch.tensor([[48, 48], [48, 48]])
    config = AugmentConfig(size=32, eval_resize=36, randaugment=False)
    ours = evaluation_views(images, sizes, torch.tensor([0, 1]), config, mean=(0, 0, 0), std=(1, 1, 1))
    ref = TF.center_crop(TF.resize(images.float() / 255, [36], antialias=True), [32, 32])
    assert (ours - ref).abs().mean() < 0.01
    assert center_crop_boxes(torch.tensor([[40, 80]]), 0.5).tolist() == [[30.0, 10.0, 50.0, 30.0]]


@pytest.mark.parametrize("which", ["brightness", "contrast", "saturation", "hue"])
def test_color_jitter_matches_torchvision(which):
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([0.6, 1.0, 1.3]) if which != "hue" else torch.tensor([-0.1, 0.05, 0.3])
    ones = torch.ones(3)
    args = {"brightness": ones, "contrast": ones, "saturation": ones, "hue": None}
    args[which] = factors
    ours = color_jitter(x.clone(), **args)
    fn = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }[which]
    ref = torch.stack([fn(x[i], float(factors[i])) for i in range(3)])
    assert torch.allclose(ours, ref, atol=1e-5)


def test_normalize():
    x = torch.full((1, 3, 2, 2), 0.5)
    out = normalize(x.clone(), CLIP_MEAN, CLIP_STD)
    expected = torch.tensor([(0.5 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)])
    assert torch.allclose(out[0, :, 0, 0], expected)


def _pil(x: torch.Tensor):
    from PIL import Image

    data = (x * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(data)


def _tensor(image) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize(
    "op", ["equalize", "posterize", "solarize", "auto_contrast", "invert", "solarize_add"]
)
def test_pixel_ops_match_pillow(op):
    from PIL import ImageOps

    x = (torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2).mul(
        255
    ).round() / 255
    level = torch.tensor([0.7, 0.35])
    ours = _apply(op, x.clone(), level, torch.ones(2), (0.5, 0.5, 0.5))
    for i in range(2):
        lv = float(level[i])
        image = _pil(x[i])
        ref = {
            "equalize": lambda im: ImageOps.equalize(im),
            "posterize": lambda im, lv=lv: ImageOps.posterize(im, math.floor(4 * lv)),
            "solarize": lambda im, lv=lv: ImageOps.solarize(im, math.floor(256 * lv)),
            "auto_contrast": lambda im: ImageOps.autocontrast(im),
            "invert": lambda im: ImageOps.invert(im),
            "solarize_add": lambda im, lv=lv: im.point(
                lambda v: min(255, v + math.floor(110 * lv)) if v < 128 else v
            ),
        }[op](image)
        assert (ours[i] - _tensor(ref)).abs().max() <= 1.5 / 255, op


def test_translate_moves_pixels_and_fills():
    x = torch.rand(1, 3, 10, 20, generator=torch.Generator().manual_seed(3))
    out = _apply("translate_x", x.clone(), torch.tensor([1.0]), torch.tensor([1.0]), (0.1, 0.2, 0.3))
    shift = round(0.45 * 20)  # 9 px
    assert torch.allclose(out[..., : 20 - shift], x[..., shift:], atol=1e-5)
    assert torch.allclose(out[0, :, :, -1], torch.tensor([0.1, 0.2, 0.3])[:, None].expand(3, 10), atol=1e-5)


def test_every_randaugment_op_runs_and_stays_in_range():
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    for op in RANDAUGMENT_OPS:
        out = _apply(op, x.clone(), torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, -1.0, 1.0]), (0.5,) * 3)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 + 1e-6, op
    a = rand_augment(x, torch.Generator().manual_seed(5))
    b = rand_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(rand_augment(x, torch.Generator().manual_seed(5), num_ops=0), x)
    with pytest.raises(ValueError, match="unknown RandAugment ops"):
        rand_augment(x, torch.Generator(), ops=("blur",))


def test_augment_views_deterministic_and_flip_only_pipeline():
    images = _smooth_images(3, 32)
    sizes = torch.full((3, 2), 32)
    index = torch.tensor([0, 1, 2, 2, 1])
    config = AugmentConfig(size=16, eval_resize=16)
    a = augment_views(images, sizes, index, config, torch.Generator().manual_seed(7))
    b = augment_views(images, sizes, index, config, torch.Generator().manual_seed(7))
    c = augment_views(images, sizes, index, config, torch.Generator().manual_seed(8))
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = AugmentConfig(
        size=16,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=1.0,
        brightness=0,
        contrast=0,
        saturation=0,
        grayscale_p=0.0,
        randaugment=False,
        eval_resize=16,
    )
    flipped = augment_views(images, sizes, index, plain, torch.Generator().manual_seed(0))
    assert torch.allclose(flipped, evaluation_views(images, sizes, index, plain).flip(-1), atol=1e-5)
    gray = AugmentConfig(size=16, grayscale_p=1.0, randaugment=False, eval_resize=16)
    out = augment_views(
        images, sizes, index, gray, torch.Generator().manual_seed(0), mean=(0,) * 3, std=(1,) * 3
    )
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_augment_config_validation():
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="hue"):
        AugmentConfig(hue=0.7)
    with pytest.raises(ValueError, match="eval_resize"):
        AugmentConfig(size=224, eval_resize=200)
    assert AugmentConfig.intra().hue == 0.1 and AugmentConfig.intra().eval_resize == 84
    assert AugmentConfig.reference().eval_resize == 256
