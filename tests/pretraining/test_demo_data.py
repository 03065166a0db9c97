"""The packaged demo data: files, counts, readers, shared validation split, reproducible build."""

from __future__ import annotations

import hashlib

import pytest
import torch
from helpers_pretraining import shared

from bamco_fast.demo_data import demo_manifest, demo_paths, demo_root
from bamco_fast.pretraining import SamplerConfig, evaluation_batches, load_knowledge_table


def test_demo_files_counts_and_checksums():
    root = demo_root()
    manifest = demo_manifest()
    counts = manifest["counts"]
    assert 40 <= counts["images"] <= 80 and counts["classes_2plus"] >= 20
    total = 0
    for name, digest in manifest["sha256"].items():
        data = (root / name).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert total < 3_000_000
    assert (root / "LICENSE.BaMCo").read_text().startswith("MIT License")
    assert "CC0" in (root / "README.md").read_text()


def test_demo_readers_and_shared_split():
    from bamco_fast.data import load_split

    paths = demo_paths()
    counts = demo_manifest()["counts"]
    train = load_knowledge_table(paths.knowledge["train"], paths.images)
    assert len(train) == counts["kg_train"] and train.num_classes == counts["classes"]
    assert int((train.pool_sizes >= 2).sum()) == counts["classes_2plus"]
    val = load_knowledge_table(
        paths.knowledge["validate"], paths.images, classes=train.classes, allow_empty_classes=True
    )
    test = load_knowledge_table(
        paths.knowledge["test"], paths.images, classes=train.classes, allow_empty_classes=True
    )
    assert len(val) == counts["kg_validate"] and len(test) == counts["kg_test"]
    vqa_val = load_split("vqa-rad", paths.vqa_root, "validate")
    vqa_train = load_split("vqa-rad", paths.vqa_root, "train")
    assert (
        len(vqa_val) == counts["vqa_validate"]
        and len(load_split("vqa-rad", paths.vqa_root, "test")) == counts["vqa_test"]
    )
    assert set(val.images) == {r.image_name for r in vqa_val}  # one validation split for both stages
    assert not set(train.images) & set(val.images)
    assert set(train.images) <= {r.image_name for r in vqa_train}


def test_demo_images_decode_into_batches():
    from bamco_fast.pretraining import build_image_cache

    torch.set_num_threads(1)
    paths = demo_paths()
    table = load_knowledge_table(paths.knowledge["validate"], paths.images)
    cache = build_image_cache(table.image_paths, 32, names=table.images)
    assert int(cache.sizes.max()) == 32 and cache.images.float().std() > 10
    view = next(
        evaluation_batches(
            table, cache, SamplerConfig(batch_size=4, num_images=2, image_size=32, intra_image_size=16)
        )
    )
    assert view.images.shape == (4, 3, 32, 32) and torch.isfinite(view.images).all()


def test_build_is_reproducible(tmp_path):
    from bamco_fast.demo_data.build import main

    source = shared()
    assert main(["--shared", str(source), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "manifest.json").read_text() == (demo_root() / "manifest.json").read_text()
    assert not list(tmp_path.glob(".demo-build-*"))
    assert main(["--shared", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("count", [3])
def test_select_images_prefers_second_images(count):
    from bamco_fast.demo_data.build import select_images

    pools = {"a": {"1", "2"}, "b": {"2", "3"}, "c": {"4"}, "d": {"1", "3"}}
    chosen = select_images(pools, count)
    assert chosen == ["1", "2", "3"]  # every class with two images in the full file gets both
    with pytest.raises(ValueError, match="asked for 9"):
        select_images(pools, 9)
