"""IntraClassBank: cosine top-1 retrieval, seeded stacks per question key, decoding, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bamco_fast.models.retrieval import IntraClassBank

MEAN = (0.5, 0.25, 0.125)
STD = (0.5, 0.5, 0.25)


def _bank(sampling: str = "question", seed: int = 0) -> IntraClassBank:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 4, 5), dtype=torch.uint8, generator=gen)
    return IntraClassBank(
        ["liver", "lung", "heart"],
        images,
        [[0, 1, 2], [3, 4], [5, 6, 0]],
        mean=MEAN,
        std=STD,
        seed=seed,
        sampling=sampling,
    )


def test_retrieve_is_cosine_argmax():
    bank = _bank()
    emb = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    bank.set_class_embeddings(emb)
    query = torch.tensor([[5.0, 0.1], [0.1, 0.9], [2.0, 2.1], [-1.0, -1.0]])
    cos = torch.nn.functional.normalize(query, dim=-1) @ torch.nn.functional.normalize(emb, dim=-1).T
    assert (
        bank.retrieve(query).tolist() == cos.argmax(-1).tolist() == [0, 1, 2, 0]
    )  # tie (last row) -> lowest index


def test_stacks_are_seeded_per_key_and_normalised():
    bank = _bank()
    a = bank.stacks(torch.tensor([0, 1]), ["q1", "q2"], 6)
    b = _bank().stacks([0, 1], ["q1", "q2"], 6)
    assert a.shape == (2, 6, 3, 4, 5) and a.dtype == torch.float32
    assert torch.equal(a, b)  # same keys -> same stacks, in a fresh bank too
    alone = bank.stacks([1], ["q2"], 6)
    assert torch.equal(alone[0], a[1])  # independent of the batch composition
    idx = bank.sample_indices(0, "q1", 6)
    assert set(idx.tolist()) <= {0, 1, 2}
    expected = (
        bank.images[torch.from_numpy(idx)].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(a[0], expected)
    draws = {tuple(bank.sample_indices(0, f"q{i}", 6).tolist()) for i in range(20)}
    assert len(draws) > 10  # keys change the draw
    assert not np.array_equal(bank.sample_indices(0, "q1", 6), _bank(seed=1).sample_indices(0, "q1", 6))


def test_class_sampling_ignores_the_key():
    bank = _bank("class")
    assert np.array_equal(bank.sample_indices(2, "q1", 8), bank.sample_indices(2, "other", 8))
    assert torch.equal(bank.stacks([2, 2], ["a", "b"], 4)[0], bank.stacks([2], ["c"], 4)[0])


def test_from_paths_and_from_image_cache(tmp_path):
    from PIL import Image

    from bamco_fast.pretraining.image_cache import build_image_cache

    paths = []
    for i, mode in enumerate(["RGB", "L", "RGB"]):
        path = tmp_path / f"im{i}.png"
        size = (20 + 4 * i, 16)
        Image.new(mode, size, color=(40 * i, 100, 200) if mode == "RGB" else 90).save(path)
        paths.append(path)
    bank = IntraClassBank.from_paths(
        {"a": [paths[0], paths[1]], "b": [paths[1], paths[2]]}, image_size=8, mean=MEAN, std=STD
    )
    assert bank.images.shape == (3, 3, 8, 8)  # the shared image is stored once
    assert bank.pools[1].tolist() == [1, 2]
    assert bank.images[1].unique().tolist() == [90]  # grayscale -> RGB, constant stays constant
    assert bank.images[2, 0].unique().tolist() == [80]
    cache = build_image_cache(paths, 32, workers=1)
    from_cache = IntraClassBank.from_image_cache(
        {"a": [str(paths[0]), str(paths[1])], "b": [str(paths[1]), str(paths[2])]},
        cache,
        image_size=8,
        mean=MEAN,
        std=STD,
    )
    assert from_cache.images.shape == (3, 3, 8, 8)
    assert from_cache.images[1].unique().tolist() == [90]
    with pytest.raises(ValueError, match="is not in the cache"):
        IntraClassBank.from_image_cache({"a": ["nope.png"]}, cache, image_size=8, mean=MEAN, std=STD)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png.*cannot be decoded"):
        IntraClassBank.from_paths({"a": [broken]}, image_size=8, mean=MEAN, std=STD)


def test_errors():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="class 'b' has no images"):
        IntraClassBank(["a", "b"], images, [[0], []], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="outside 0..1"):
        IntraClassBank(["a"], images, [[2]], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="uint8"):
        IntraClassBank(["a"], images.float(), [[0]], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="sampling"):
        IntraClassBank(["a"], images, [[0]], mean=MEAN, std=STD, sampling="random")
    bank = _bank()
    with pytest.raises(RuntimeError, match="class embeddings not set"):
        bank.retrieve(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"embeddings: expected shape \(3, D\)"):
        bank.set_class_embeddings(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="keys: expected 2 keys"):
        bank.stacks([0, 1], ["q"], 3)
