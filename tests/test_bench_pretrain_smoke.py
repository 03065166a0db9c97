"""The pretraining-step benchmark at tiny shapes: both pipelines run, profile, and compute the same objective.

Tiny towers (session fixture), the packaged demo knowledge and images, K = 64 intra-class images of
32 px (the smallest stack the encoder takes), batch 2.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_pretrain_step import OursPipeline, format_table, summarise
from frozen_caches import text_feature_cache, trimmed_tokens
from published_pretrain import PublishedPipeline, published_model, published_objective
from step_profile import PHASES

from bamco_fast import BaMCoObjective
from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
from bamco_fast.ops._backends import cpp_availability

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        cpp_availability() is not None,
        reason=f"the benchmark's own rows use the C++ ops: {cpp_availability()}",
    ),
]

SHAPES = dict(num_images=64, intra_image_size=32, feature_size=2, embed_dim=32, intra_backend="cpp")
BATCH = 2


@pytest.fixture(scope="module")
def demo():
    from bamco_fast.demo_data import demo_paths
    from bamco_fast.pretraining import build_image_cache, load_knowledge_table

    paths = demo_paths()
    table = load_knowledge_table(paths.knowledge["train"], paths.images)
    cache = build_image_cache(table.image_paths, 64, names=table.images)
    return table, cache


@pytest.fixture()
def config(tiny_towers_dir):
    return KnowledgeSpaceConfig(tower=f"local-dir:{tiny_towers_dir}", **SHAPES)


def test_published_objective_matches_fused_objective_on_identical_features():
    gen = torch.Generator().manual_seed(0)
    b, c, d = 6, 5, 16
    feats = [F.normalize(torch.randn(b, d, generator=gen), dim=-1).requires_grad_() for _ in range(3)]
    protos = F.normalize(torch.randn(c, d, generator=gen), dim=-1).requires_grad_()
    logits = torch.randn(b, c, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 3, 4, 0])
    counts = torch.tensor([5, 1, 9, 2, 3])
    image, text, intra = feats
    ours = BaMCoObjective(counts, backend="cpp")(logits, [image, text, intra], labels, protos)
    theirs = published_objective(logits, image, text, intra, labels, protos, counts)
    for key in ("ce_loss", "contrastive_loss", "loss"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)
    inputs = [logits, *feats, protos]
    g_ours = torch.autograd.grad(ours["loss"], inputs)
    g_theirs = torch.autograd.grad(theirs["loss"], inputs)
    for a, b_ in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-6)


def test_trimmed_tokens_keep_every_used_column():
    tokens = torch.tensor([[2, 7, 3, 0, 0, 0], [2, 3, 0, 0, 0, 0]])
    assert trimmed_tokens(tokens, 0).tolist() == [[2, 7, 3], [2, 3, 0]]
    assert trimmed_tokens(torch.zeros(2, 4, dtype=torch.long), 0).shape == (2, 1)


def test_text_feature_cache_equals_the_tower_at_full_context_length(tiny_towers, config):
    """Grouped by length and trimmed, the cached rows equal the text tower on the full padded tokens."""
    model = KnowledgeSpace(config, ["a", "b"], towers=tiny_towers)
    strings = ["liver", "the lung is an organ of respiration in the chest", "brain", "a paired organ", "lung"]
    cache = text_feature_cache(model, strings, group_size=2)
    keys = torch.tensor([4, 1, 0, 3])
    assert cache.ensure(keys) == 4 and cache.ensure(keys[:2]) == 0
    with torch.no_grad():
        direct = model.frozen_text_features([strings[k] for k in keys.tolist()])
    torch.testing.assert_close(cache(keys), direct, rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="ensure"):
        cache(torch.tensor([2]))


def test_pipelines_compute_the_same_objective_on_the_same_batch(demo, tiny_towers, config):
    """Ours (cached trimmed text features, C++ encoder, fused loss) vs the published recipe (tokens at the
    full context length through the text tower, eager encoder, Python-loop loss), same weights and inputs."""
    table, cache = demo
    torch.manual_seed(0)
    ours = OursPipeline(
        table, cache, KnowledgeSpace(config, table.classes, towers=tiny_towers), batch_size=BATCH
    )
    model = published_model(config, table.classes, tiny_towers, layout="channels")
    model.load_state_dict(ours.model.state_dict())
    published = PublishedPipeline(table, model)
    ours.prepare([0])
    batch = ours.batches.batch(0, 0)
    ours.model.eval(), model.eval()  # no dropout anywhere: the two forwards must agree
    mine = ours.losses(batch, ours.text(batch.text_index))
    tokens = tiny_towers.tokenize([table.strings[i] for i in batch.text_index.tolist()])
    assert tokens.shape[1] == tiny_towers.context_length
    theirs = published.losses(batch.images, tokens, batch.intra_stacks, batch.labels)
    for key in ("ce_loss", "contrastive_loss", "loss"):
        torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-5, msg=key)


def test_image_feature_cache_equals_the_tower_on_the_unaugmented_view(demo, tiny_towers, config):
    table, cache = demo
    pipe = OursPipeline(
        table,
        cache,
        KnowledgeSpace(config, table.classes, towers=tiny_towers),
        batch_size=BATCH,
        image_features=True,
    )
    pipe.prepare([0])
    batch = pipe.batches.batch(0, 0)
    with torch.no_grad():
        direct = pipe.model.frozen_image_features(batch.images)
    torch.testing.assert_close(pipe.images(batch.image_index), direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="ensure"):
        pipe.images(torch.tensor([len(cache) - 1 if int(batch.image_index[0]) != len(cache) - 1 else 0]))


@pytest.mark.parametrize("row", ["published", "ours", "ours+image-cache"])
def test_each_pipeline_takes_a_profiled_training_step(demo, tiny_towers, config, row):
    table, cache = demo
    torch.manual_seed(0)
    if row == "published":
        pipe = PublishedPipeline(table, published_model(config, table.classes, tiny_towers))
        assert pipe.model.intra_encoder.layout == "official"

        def step():
            return pipe.step(list(range(BATCH)))
    else:
        model = KnowledgeSpace(config, table.classes, towers=tiny_towers)
        pipe = OursPipeline(table, cache, model, batch_size=BATCH, image_features=row != "ours")
        pipe.prepare([0])

        def step():
            return pipe.step(0)

    before = pipe.model.text_head.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    result = step()
    assert set(result.times) == {*PHASES, "total"}
    assert all(v >= 0 for v in result.times.values()), result.times
    assert sum(result.times[p] for p in PHASES) <= result.times["total"] * 1.05 + 1e-3
    assert result.times["encoder"] > 0 and result.times["data"] > 0
    assert all(math.isfinite(v) for v in result.losses.values())
    after = pipe.model.text_head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), (
        "the optimiser did not move the text head"
    )
    assert not any(p.grad is not None for p in pipe.model.parameters()), "gradients were not cleared"
    table_text = format_table([summarise(row, BATCH, [result], {})])
    assert row in table_text and "%" in table_text
