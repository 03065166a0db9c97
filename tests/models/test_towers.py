"""Towers through open_clip's real loading path, on tiny BiomedCLIP-shaped towers built locally."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

from bamco_fast.models.tiny import build_tiny_towers, train_wordpiece_vocab
from bamco_fast.models.towers import Towers, load_towers

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE = 64  # the session fixture's image size; patch 16 -> grid 4x4


@pytest.fixture(scope="module")
def towers(tiny_towers_dir) -> Towers:
    loaded = load_towers(f"local-dir:{tiny_towers_dir}")
    assert not any(m.training for m in loaded.modules())  # loaded for inference: eval mode
    return loaded


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def test_attributes(towers, tiny_towers_dir):
    assert towers.name == f"local-dir:{tiny_towers_dir}"
    assert towers.image_size == IMAGE
    assert towers.image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert towers.image_std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert towers.context_length == 32
    assert towers.embed_dim == 32
    assert towers.patch_width == 64
    assert towers.patch_grid == (4, 4)
    assert type(towers.clip.visual.trunk).__name__ == "VisionTransformer"
    assert type(towers.clip.text.transformer).__name__ == "BertModel"
    assert towers.clip.text.transformer.pooler is None


def test_tokenize(towers):
    tokens = towers.tokenize(["the liver", "Lung", "an unseen word: zygote"])
    assert tokens.shape == (3, 32) and tokens.dtype == torch.int64
    cls_id, sep_id, pad_id = (
        towers.tokenizer.tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]")
    )
    assert pad_id == 0 == towers.clip.text.config.pad_token_id
    assert (tokens[:, 0] == cls_id).all()
    assert tokens[1, 2] == sep_id and (tokens[1, 3:] == pad_id).all()  # lower-cased "lung" is one word
    assert towers.tokenize(["LUNG"]).equal(towers.tokenize(["lung"]))
    long = towers.tokenize([" ".join(["liver"] * 100)])
    assert long.shape == (1, 32) and long[0, -1] == sep_id
    assert towers.tokenize([]).shape == (0, 32)
    with pytest.raises(TypeError, match="sequence of strings"):
        towers.tokenize("liver")
    with pytest.raises(TypeError, match="index 1"):
        towers.tokenize(["liver", 3])


def test_shapes_and_determinism(towers, tiny_towers_dir):
    import open_clip

    images = _images(3)
    tokens = towers.tokenize(["liver", "the lung is an organ", "brain"])
    with torch.no_grad():
        img, txt = towers.encode_image(images), towers.encode_text(tokens)
        assert img.shape == (3, 32) and txt.shape == (3, 32)
        assert not torch.allclose(img.norm(dim=-1), torch.ones(3))  # not L2-normalised
        again = load_towers(f"local-dir:{tiny_towers_dir}").eval()
        assert again.encode_image(images).equal(img) and again.encode_text(tokens).equal(txt)
        # the same folder through open_clip's own entry points gives the same features
        clip = open_clip.create_model_from_pretrained(
            f"local-dir:{tiny_towers_dir}", return_transform=False
        ).eval()
        tok = open_clip.get_tokenizer(f"local-dir:{tiny_towers_dir}")
        assert tok(["liver", "the lung is an organ", "brain"]).equal(tokens)
        assert clip.encode_image(images).equal(img) and clip.encode_text(tokens).equal(txt)
        # a row does not depend on the rest of the batch (padding masked, no cross-sample op)
        torch.testing.assert_close(towers.encode_text(tokens[1:2]), txt[1:2], atol=1e-6, rtol=1e-5)


def _permute_patches(images: torch.Tensor, perm: torch.Tensor, grid: int, patch: int = 16) -> torch.Tensor:
    b, c = images.shape[:2]
    blocks = (
        images.reshape(b, c, grid, patch, grid, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, -1)
    )
    blocks = blocks[:, perm]
    return blocks.reshape(b, grid, grid, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(images.shape)


def test_patch_tokens(towers):
    images = _images(2, seed=1)
    trunk = towers.clip.visual.trunk
    with torch.no_grad():
        pos = towers.patch_tokens(images, positional=True)
        nopos = towers.patch_tokens(images, positional=False)
        assert pos.shape == nopos.shape == (2, 16, 64)
        assert pos.equal(trunk.forward_features(images)[:, 1:])
        assert not torch.allclose(pos, nopos, atol=1e-3)
        # without positional embeddings and CLS the ViT is permutation-equivariant over patches;
        # the standard forward is not
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
        shuffled = _permute_patches(images, perm, grid=4)
        torch.testing.assert_close(towers.patch_tokens(shuffled, positional=False), nopos[:, perm])
        assert not torch.allclose(towers.patch_tokens(shuffled, positional=True), pos[:, perm], atol=1e-3)


def test_bad_inputs(towers):
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 64, 64\), got \(2, 3, 32, 32\)"):
        towers.encode_image(torch.zeros(2, 3, 32, 32))
    expected = rf"\(B, 3, {IMAGE}, {IMAGE}\) normalised with image_mean/std"
    with pytest.raises(
        TypeError,
        match=rf"Towers.patch_tokens: images must be a floating tensor {expected}, got dtype torch.uint8",
    ):
        towers.patch_tokens(torch.zeros(2, 3, IMAGE, IMAGE, dtype=torch.uint8))
    with pytest.raises(
        TypeError, match=rf"Towers.encode_image: images must be a torch.Tensor {expected}, got list"
    ):
        towers.encode_image([[0.0]])
    with pytest.raises(ValueError, match=r"tokens must be a \(N, L\)"):
        towers.encode_text(torch.zeros(32, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        towers.encode_text(torch.zeros(1, 32))


def test_bad_names(tmp_path):
    for name in ("BiomedCLIP", "hf-hub:", 3):
        with pytest.raises(ValueError, match="hf-hub:ORG/NAME"):
            load_towers(name)
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        load_towers(f"local-dir:{tmp_path}")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(ValueError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        load_towers("hf-hub:bamco-fast-tests/no-such-model")  # at once, no retries


def test_save_and_move(towers, tmp_path):
    """Towers.save writes a self-contained folder; it still loads after being moved."""
    images, tokens = _images(2), towers.tokenize(["liver", "brain"])
    saved = towers.save(tmp_path / "saved")
    umask = os.umask(0)
    os.umask(umask)
    for path in saved.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    moved = tmp_path / "moved"
    shutil.move(str(saved), str(moved))
    reloaded = load_towers(f"local-dir:{moved}").eval()
    with torch.no_grad():
        assert reloaded.encode_image(images).equal(towers.encode_image(images))
        assert reloaded.encode_text(tokens).equal(towers.encode_text(tokens))
    with pytest.raises(FileExistsError, match="not empty"):
        towers.save(moved)
    assert towers.save(moved, overwrite=True) == moved
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_build_is_reproducible(tmp_path):
    texts = ["liver lesion", "lung", "the lung is an organ"]
    a = build_tiny_towers(tmp_path / "a", texts, image_size=32, embed_dim=8, context_length=8, seed=3)
    b = build_tiny_towers(tmp_path / "b", texts, image_size=32, embed_dim=8, context_length=8, seed=3)
    c = build_tiny_towers(tmp_path / "c", texts, image_size=32, embed_dim=8, context_length=8, seed=4)
    for name in ("open_clip_model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "open_clip_model.safetensors").read_bytes() != (
        c / "open_clip_model.safetensors"
    ).read_bytes()
    vocab = train_wordpiece_vocab(texts, vocab_size=1000)
    assert list(vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"liver", "lung", "lesion", "organ", "l", "##l"} <= set(vocab)
    characters = train_wordpiece_vocab(texts, vocab_size=0)  # specials and characters only
    assert not {"liver", "lung"} & set(characters)
    one_word = train_wordpiece_vocab(texts, vocab_size=len(characters) + 1)
    assert list(one_word)[-1] == "lung"  # the most frequent word comes first


def test_build_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size must be a multiple of 16"):
        build_tiny_towers(tmp_path / "x", ["a"], image_size=30)
    with pytest.raises(ValueError, match="texts must be a non-empty sequence"):
        build_tiny_towers(tmp_path / "x", [])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        build_tiny_towers(tmp_path / "x", ["a", None])
    with pytest.raises(ValueError, match="text_init_std"):
        build_tiny_towers(tmp_path / "x", ["a"], text_init_std=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_towers(tmp_path / "full", ["a"], image_size=32)
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"


def test_tiny_text_tower_tells_strings_apart(towers):
    """With BERT's default init (0.02) a tiny random BERT's CLS output is nearly the same for every string
    (mean pairwise cosine 0.99995), which leaves a text head nothing to learn from; the tiny towers'
    default init keeps different strings apart."""
    texts = [
        "liver",
        "the lung is an organ of respiration in the chest",
        "brain",
        "kidney",
        "location of chest",
    ]
    with torch.no_grad():
        feats = torch.nn.functional.normalize(towers.encode_text(towers.tokenize(texts)), dim=-1)
    cos = feats @ feats.T
    off_diagonal = cos[~torch.eye(len(texts), dtype=torch.bool)]
    assert float(off_diagonal.mean()) < 0.99, off_diagonal
