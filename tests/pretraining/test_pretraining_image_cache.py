"""uint8 image cache: modes -> RGB, aspect-preserving resize, on-disk cache reuse and file mode."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from helpers_pretraining import write_image

from bamco_fast.pretraining import build_image_cache, decode_image


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "RGB"])
def test_decode_any_mode_to_rgb(tmp_path, mode):
    path = write_image(tmp_path / f"x.{mode}", (40, 20), mode=mode, value=50)
    data = decode_image(path, 16)
    assert data.dtype == torch.uint8 and data.shape == (3, 8, 16)
    if mode == "L":
        assert torch.equal(data[0], data[1]) and torch.equal(data[1], data[2])


def test_cache_layout_and_values(tmp_path):
    from PIL import Image

    wide = write_image(tmp_path / "wide.png", (64, 32), mode="RGBA")
    tall = write_image(tmp_path / "tall.jpg", (10, 20))
    cache = build_image_cache([wide, tall], 32, names=["w", "t"], workers=1)
    assert cache.images.shape == (2, 3, 32, 32) and cache.images.dtype == torch.uint8
    assert cache.sizes.tolist() == [[16, 32], [32, 16]]  # longer side = R, upscaled when smaller
    assert torch.count_nonzero(cache.images[0, :, 16:]) == 0  # padding stays zero
    with Image.open(wide) as image:
        expected = image.convert("RGB").resize((32, 16), Image.Resampling.LANCZOS)
    got = cache.images[0, :, :16, :32].permute(1, 2, 0).contiguous().numpy().tobytes()
    assert got == expected.tobytes()
    threaded = build_image_cache([wide, tall], 32, names=["w", "t"], workers=2)
    assert torch.equal(threaded.images, cache.images)


def test_disk_cache_reuse_invalidation_and_mode(tmp_path):
    a = write_image(tmp_path / "a.jpg", (30, 30), value=1)
    b = write_image(tmp_path / "b.jpg", (30, 30), value=99)
    file = tmp_path / "cache" / "images.pt"
    old = os.umask(0o027)
    try:
        first = build_image_cache([a, b], 16, cache_file=file)
    finally:
        os.umask(old)
    assert stat.S_IMODE(file.stat().st_mode) == 0o640
    stamp = file.stat().st_mtime_ns
    again = build_image_cache([a, b], 16, cache_file=file)
    assert file.stat().st_mtime_ns == stamp and torch.equal(again.images, first.images)
    write_image(a, (30, 30), value=200)  # changed source -> rebuilt
    os.utime(a, ns=(stamp + 10**9, stamp + 10**9))
    changed = build_image_cache([a, b], 16, cache_file=file)
    assert not torch.equal(changed.images[0], first.images[0]) and torch.equal(
        changed.images[1], first.images[1]
    )
    other = build_image_cache([a, b], 8, cache_file=file)  # another resolution -> rebuilt
    assert other.images.shape[-1] == 8
    file.write_bytes(b"garbage")
    assert build_image_cache([a, b], 8, cache_file=file).images.shape[-1] == 8


def test_cache_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="1 image file"):
        build_image_cache([tmp_path / "none.jpg"], 16)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode image"):
        build_image_cache([bad], 16, workers=1)
    with pytest.raises(ValueError, match="resolution"):
        build_image_cache([bad], 4)
    with pytest.raises(ValueError, match="empty"):
        build_image_cache([], 16)
