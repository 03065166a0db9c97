"""IntraClassEncoder construction: sizes, layout and backend are checked when the module is built."""

from __future__ import annotations

import pytest
import torch

from bamco_fast import IntraClassEncoder
from bamco_fast.encoders import DilatedDepthwiseBlock

TINY = {"feature_size": 2, "out_dim": 8}


@pytest.mark.parametrize(
    ("num_images", "image_size", "final"),
    [(32, 32, "1x1x1"), (40, 63, "1x1x1"), (36, 32, "1x1x1")],
)
def test_a_one_voxel_final_volume_is_refused_as_documented(num_images, image_size, final):
    with pytest.raises(ValueError, match=f"must hold >= 2 voxels for its instance norm, got {final}"):
        IntraClassEncoder(num_images=num_images, image_size=image_size, **TINY)


def test_docstring_states_the_size_rule():
    doc = " ".join(IntraClassEncoder.__doc__.split())
    assert "must hold at least 2" in doc and "K = H = 32 (1 voxel) is refused" in doc
    assert "K, H and W must each be >= 32 (five halvings)." not in doc


@pytest.mark.parametrize(("num_images", "image_size"), [(64, 32), (32, 64)])
def test_smallest_documented_sizes_run(num_images, image_size):
    torch.set_num_threads(1)
    encoder = IntraClassEncoder(num_images=num_images, image_size=image_size, backend="reference", **TINY)
    out = encoder(torch.randn(1, num_images, 3, image_size, image_size))
    assert out.shape == (1, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 36.0},
        {"image_size": 84.5},
        {"image_size": True},
        {"num_images": "36"},
        {"feature_size": 2.0},
        {"out_dim": 0},
    ],
)
def test_non_int_sizes_give_a_clear_error(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=f"IntraClassEncoder: {name} must be a positive int, got {value!r}"):
        IntraClassEncoder(**{**TINY, **kwargs})


def test_bad_backend_is_refused_at_construction():
    message = r"backend must be None, 'auto' or one of \['triton', 'cpp', 'reference'\], got 'cuda'"
    with pytest.raises(ValueError, match="IntraClassEncoder: " + message):
        IntraClassEncoder(backend="cuda", **TINY)
    with pytest.raises(ValueError, match="DilatedDepthwiseBlock: " + message):
        DilatedDepthwiseBlock(4, 8, backend="cuda")
    encoder = IntraClassEncoder(num_images=64, image_size=32, backend="auto", **TINY)
    with pytest.raises(ValueError, match="IntraClassEncoder.set_backend: " + message):
        encoder.set_backend("cuda")
    for name in (None, "reference", "cpp", "triton"):
        assert encoder.set_backend(name) is encoder
