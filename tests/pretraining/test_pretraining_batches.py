"""Training batches: shapes, determinism, exact resume, sampling probabilities, evaluation view."""

from __future__ import annotations

import math

import pytest
import torch
from helpers_pretraining import make_knowledge, published_vqa_rad_table, record, small_rows

from bamco_fast.pretraining import (
    PUBLISHED_TEXT_PROBABILITIES,
    AugmentConfig,
    KnowledgeBatches,
    SamplerConfig,
    build_image_cache,
    evaluation_batches,
    load_knowledge_table,
)

TINY = SamplerConfig(batch_size=4, num_images=3, image_size=16, intra_image_size=8)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def table(tmp_path):
    return load_knowledge_table(make_knowledge(tmp_path, small_rows()), tmp_path / "imgs")


@pytest.fixture
def cache(table):
    return build_image_cache(table.image_paths, 24, names=table.images, workers=1)


def _equal(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


def test_batch_shapes_and_consistency(table, cache):
    batches = KnowledgeBatches(table, cache, TINY, seed=0)
    assert len(batches) == len(table) // 4 == 6
    b = batches.batch(0, 0)
    assert b.images.shape == (4, 3, 16, 16) and b.intra_stacks.shape == (4, 3, 3, 8, 8)
    assert b.images.dtype == torch.float32 and b.text_index.dtype == torch.int64
    assert torch.equal(b.labels, table.record_class[b.record_index])
    assert torch.equal(b.image_index, table.record_image[b.record_index])
    assert torch.equal(b.text_index, table.record_text[b.record_index].gather(1, b.text_kind[:, None])[:, 0])
    for row, label in zip(b.intra_index.tolist(), b.labels.tolist()):
        pool = table.pool_images[table.pool_offsets[label] : table.pool_offsets[label + 1]].tolist()
        assert set(row) <= set(pool)
    half = KnowledgeBatches(table, cache, TINY, seed=0, dtype=torch.bfloat16).batch(0, 0)
    assert half.images.dtype == torch.bfloat16 and torch.equal(half.text_index, b.text_index)


def test_epoch_covers_records_once_and_seeds(table, cache):
    batches = KnowledgeBatches(table, cache, TINY, seed=3)
    records = torch.cat([batches.draw(0, i).records for i in range(len(batches))])
    assert sorted(records.tolist()) == list(range(len(table)))
    assert not torch.equal(batches.permutation(0), batches.permutation(1))
    same = KnowledgeBatches(table, cache, TINY, seed=3)
    other = KnowledgeBatches(table, cache, TINY, seed=4)
    assert _equal(batches.batch(1, 2), same.batch(1, 2))
    assert not torch.equal(batches.batch(1, 2).images, other.batch(1, 2).images)


def test_resume_mid_epoch_gives_identical_batches(table, cache):
    config = SamplerConfig(batch_size=8, num_images=2, image_size=8, intra_image_size=8)
    reference = KnowledgeBatches(table, cache, config, seed=11)
    expected = [b for _ in range(2) for b in reference]  # two epochs of 3 batches
    assert reference.state_dict()["epoch"] == 2 and len(expected) == 6

    first = KnowledgeBatches(table, cache, config, seed=11)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 2:
            state = first.state_dict()  # taken while batch 2 is in use
            break
    assert state["epoch"] == 0 and state["position"] == 2
    resumed = KnowledgeBatches(table, cache, config, seed=0)
    resumed.load_state_dict(state)
    got.extend(resumed)  # rest of epoch 0
    got.extend(resumed)  # epoch 1
    assert len(got) == 6 and all(_equal(a, b) for a, b in zip(got, expected))

    end = KnowledgeBatches(table, cache, config, seed=11)
    end.set_epoch(0, position=3)  # state saved after the last batch of epoch 0
    assert list(end) == [] and end.state_dict()["epoch"] == 1
    assert _equal(next(iter(end)), expected[3])


def test_state_dict_errors(table, cache):
    batches = KnowledgeBatches(table, cache, TINY)
    state = batches.state_dict()
    other = KnowledgeBatches(
        table, cache, SamplerConfig(batch_size=6, num_images=3, image_size=16, intra_image_size=8)
    )
    with pytest.raises(ValueError, match="batch_size=4, this sampler has batch_size=6"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        batches.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="position"):
        batches.load_state_dict({**state, "position": 99})
    with pytest.raises(IndexError):
        batches.batch(0, 6)


def test_sampling_probabilities_match_the_published_rule(tmp_path):
    # 3 classes with pools of 1, 2 and 4 images
    rows = [record("a.jpg", "A")] * 2 + [record(f"b{i}.jpg", "B") for i in range(2)]
    rows += [record(f"c{i}.jpg", "C") for i in range(4)] * 2
    table = load_knowledge_table(make_knowledge(tmp_path, rows), tmp_path / "imgs", check_images=False)
    cache = build_image_cache(table.image_paths, 8, names=table.images, workers=1)
    k = 3
    config = SamplerConfig(batch_size=12, num_images=k, image_size=8, intra_image_size=8)
    batches = KnowledgeBatches(table, cache, config, seed=5)
    draws = [batches.draw(e, 0) for e in range(1500)]
    n = 12 * len(draws)

    def within(observed: float, p: float, count: int) -> None:
        sigma = math.sqrt(p * (1 - p) / count)
        assert abs(observed - p) <= 5 * sigma, (observed, p, sigma)

    kinds = torch.cat([d.text_kind for d in draws])
    for kind, p in enumerate(PUBLISHED_TEXT_PROBABILITIES):
        within(float((kinds == kind).float().mean()), p, n)
    assert abs(PUBLISHED_TEXT_PROBABILITIES[2] - 0.4422) < 1e-12

    records = torch.cat([d.records for d in draws])
    intra = torch.cat([d.intra_index for d in draws])
    own = torch.cat([d.image_index for d in draws])
    all_own = (intra == own[:, None]).all(1)
    size = table.pool_sizes[table.record_class[records]].double()
    # P(all K = own image) = 0.2 + 0.8 (1 / pool size)^K, summed over independent samples
    p = 0.2 + 0.8 * size.pow(-k)
    mean, var = float(p.sum()), float((p * (1 - p)).sum())
    assert abs(float(all_own.sum()) - mean) <= 5 * math.sqrt(var)
    # pool draws are uniform: class C's 4 images equally often among pool-drawn rows of C
    c_rows = intra[(table.record_class[records] == 2) & ~all_own].reshape(-1)
    counts = torch.bincount(c_rows, minlength=len(table.images))[c_rows.unique()]
    assert counts.numel() == 4
    for count in counts.tolist():
        within(count / c_rows.numel(), 0.25, c_rows.numel())


def test_configurable_rules_and_validation(table, cache):
    always_own = SamplerConfig(
        batch_size=4,
        num_images=5,
        image_size=8,
        intra_image_size=8,
        intra_from_pool_p=0.0,
        text_probabilities=(0.0, 1.0, 0.0),
    )
    d = KnowledgeBatches(table, cache, always_own).draw(0, 1)
    assert torch.equal(d.intra_index, d.image_index[:, None].expand(-1, 5))
    assert d.text_kind.tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="text_probabilities"):
        SamplerConfig(text_probabilities=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="sizes"):
        SamplerConfig(image_size=32, reference=AugmentConfig(size=16, eval_resize=16))
    with pytest.raises(ValueError, match="no full batch"):
        KnowledgeBatches(table, cache, SamplerConfig(batch_size=100))
    with pytest.raises(ValueError, match="not the table's"):
        KnowledgeBatches(table, build_image_cache(table.image_paths[:2], 8), TINY)


def test_ranks_take_disjoint_records(table, cache):
    ranks = [KnowledgeBatches(table, cache, TINY, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == 3
    seen = [torch.cat([s.draw(0, i).records for i in range(3)]) for s in ranks]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert len(set(seen[0].tolist()) | set(seen[1].tolist())) == 24


def test_unaugmented_reference_is_the_evaluation_view(table, cache):
    config = SamplerConfig(
        batch_size=4, num_images=3, image_size=16, intra_image_size=8, augment_reference=False
    )
    b = KnowledgeBatches(table, cache, config).batch(0, 0)
    view = next(evaluation_batches(table, cache, config, batch_size=len(table)))
    assert torch.allclose(b.images, view.images[b.record_index])


def test_evaluation_batches(tmp_path, table, cache):
    views = list(evaluation_batches(table, cache, TINY, batch_size=5))
    assert [len(v) for v in views] == [5, 5, 5, 5, 4]
    first = views[0]
    assert first.text_index.shape == (5, 3) and first.intra_stacks.shape == (5, 3, 3, 8, 8)
    assert torch.equal(first.intra_stacks[:, 0], first.intra_stacks[:, 2])  # own image repeated
    again = next(evaluation_batches(table, cache, TINY, batch_size=5))
    assert torch.equal(again.images, first.images)
    pooled = [next(evaluation_batches(table, cache, TINY, batch_size=5, intra="pool")) for _ in range(2)]
    assert torch.equal(pooled[0].intra_stacks, pooled[1].intra_stacks)
    with pytest.raises(ValueError, match="intra"):
        next(evaluation_batches(table, cache, TINY, intra="random"))
    # a validation table with the training classes: unknown heads are -1 and still evaluated
    path = make_knowledge(tmp_path / "val", [record("v.jpg", "Head0"), record("w.jpg", "Unseen")])
    val = load_knowledge_table(
        path, tmp_path / "val" / "imgs", classes=table.classes, allow_empty_classes=True
    )
    val_cache = build_image_cache(val.image_paths, 24, names=val.images)
    view = next(evaluation_batches(val, val_cache, TINY, intra="pool"))
    assert view.labels.tolist() == [0, -1]
    with pytest.raises(ValueError, match="every record in a class"):
        KnowledgeBatches(
            val, val_cache, SamplerConfig(batch_size=1, num_images=1, image_size=8, intra_image_size=8)
        )


def test_published_vqa_rad_batch():
    table = published_vqa_rad_table()
    keep = sorted(set(table.record_image[:40].tolist()))
    cache = build_image_cache([table.image_paths[i] for i in keep], 32)  # a few images decode for real
    full = torch.zeros(len(table.images), 3, 32, 32, dtype=torch.uint8)
    sizes = torch.full((len(table.images), 2), 32)
    full[keep], sizes[keep] = cache.images, cache.sizes
    from bamco_fast.pretraining import ImageCache

    batches = KnowledgeBatches(
        table,
        ImageCache(full, sizes, table.images, 32),
        SamplerConfig(batch_size=4, num_images=4, image_size=24, intra_image_size=12),
    )
    b = batches.batch(0, 0)
    assert b.images.shape == (4, 3, 24, 24) and b.intra_stacks.shape == (4, 4, 3, 12, 12)
    assert torch.isfinite(b.images).all() and b.labels.max() < 285


def test_from_table_with_disk_cache_and_float_cache(tmp_path, table):
    config = SamplerConfig(batch_size=4, num_images=2, image_size=16, intra_image_size=8)
    batches = KnowledgeBatches.from_table(table, config, resolution=24, cache_file=tmp_path / "c.pt", seed=2)
    assert (tmp_path / "c.pt").is_file() and batches.cache.resolution == 24
    as_float = KnowledgeBatches(table, batches.cache.to(dtype=torch.float32), config, seed=2)
    a, b = batches.batch(0, 1), as_float.batch(0, 1)
    assert torch.allclose(a.images, b.images, atol=1e-5) and torch.allclose(
        a.intra_stacks, b.intra_stacks, atol=1e-5
    )


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, bamco_fast.pretraining, bamco_fast.demo_data; "
        "heavy = [m for m in ('torchvision', 'PIL', 'spacy', 'open_clip', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_randaugment_switch():
    assert SamplerConfig().reference.randaugment and SamplerConfig().intra.hue == 0.1
    off = SamplerConfig(image_size=32, intra_image_size=16, randaugment=False)
    assert not off.reference.randaugment and not off.intra.randaugment and off.reference.size == 32
