"""The knowledge-space model on tiny towers: shapes, math, trainability, save/load, published weights."""

from __future__ import annotations

import os
import stat

import pytest
import torch
import torch.nn.functional as F

from bamco_fast import BaMCoObjective
from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
from bamco_fast.models.towers import load_towers

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["liver", "lung", "brain"]
# K, h, w must survive five halvings with >= 2 voxels left: 64 x 32 x 32 -> 2 x 1 x 1.
INTRA = dict(num_images=64, intra_image_size=32, feature_size=2, embed_dim=32)


@pytest.fixture()
def config(tiny_towers_dir):
    return KnowledgeSpaceConfig(tower=f"local-dir:{tiny_towers_dir}", **INTRA)


@pytest.fixture()
def ks(config, tiny_towers):
    torch.manual_seed(0)
    return KnowledgeSpace(config, CLASSES, towers=tiny_towers)


def _batch(b: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, 64, 64, generator=gen)
    stacks = torch.randn(b, 64, 3, 32, 32, generator=gen)
    return images, stacks


def test_forward_shapes_and_math(ks):
    images, stacks = _batch(4)
    texts = ["liver", "the lung is an organ", "brain", "kidney"]
    tokens = ks.towers.tokenize(texts)
    out = ks(images, tokens, stacks)
    for name, shape in (("image", (4, 32)), ("text", (4, 32)), ("intra", (4, 32)), ("prototypes", (3, 32))):
        value = getattr(out, name)
        assert value.shape == shape, name
        torch.testing.assert_close(value.norm(dim=-1), torch.ones(shape[0]), msg=name)
    assert out.logits.shape == (4, 3)
    with torch.no_grad():
        f1 = F.normalize(ks.towers.encode_image(images), dim=-1)
        f3 = F.normalize(ks.text_head(ks.towers.encode_text(tokens)), dim=-1)
        f2 = F.normalize(ks.intra_encoder(stacks, normalize=False), dim=-1)
        w = ks.classifier.weight
        logits = 30.0 * F.normalize(torch.cat([f1, f2], 1), dim=1) @ F.normalize(w, dim=0)
        protos = F.normalize(ks.prototype_head(w.t()), dim=-1)
    for got, want in (
        (out.image, f1),
        (out.text, f3),
        (out.intra, f2),
        (out.logits, logits),
        (out.prototypes, protos),
    ):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ks.encode_text(texts), out.text, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ks.encode_text(texts, batch_size=1), out.text, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ks.class_text_embeddings(), ks.encode_text(CLASSES))
    assert ks.patch_tokens(images, positional=False).shape == (4, 16, 64)
    partial = ks(images=images)
    assert partial.text is None and partial.intra is None and partial.logits is None


def test_cached_features_are_exact(ks):
    images, stacks = _batch(3, seed=1)
    tokens = ks.towers.tokenize(["liver", "lung", "brain"])
    direct = ks(images, tokens, stacks)
    cached = ks(
        intra_stacks=stacks,
        image_features=ks.frozen_image_features(images),
        text_features=ks.frozen_text_features(tokens),
    )
    for name in ("image", "text", "intra", "logits", "prototypes"):
        assert torch.equal(getattr(direct, name), getattr(cached, name)), name


def test_string_features_cut_padding_without_changing_them(ks):
    """Strings are encoded in groups cut to their longest member: equal to the full-context features
    up to float summation order (judged against float64), and in the caller's order."""
    texts = ["liver", "the lung is an organ of respiration in the chest", "brain", "", "kidney liver lung"]
    assert ks.towers.pad_token_id is not None  # the tiny towers' BERT masks its padding
    tokens = ks.towers.tokenize(texts)
    assert int((tokens != ks.towers.pad_token_id).sum(1).max()) < tokens.shape[1]  # something to cut
    full = ks.frozen_text_features(tokens)
    cut = ks.frozen_text_features(texts, batch_size=2)
    with torch.no_grad():
        ks.towers.double()
        exact = ks.frozen_text_features(tokens).float()
        ks.towers.float()
    own_error = (full - exact).abs().max()
    assert (cut - exact).abs().max() <= 4 * own_error + 1e-6


def test_trainability_and_loss(ks, config):
    images, stacks = _batch(4, seed=2)
    labels = torch.tensor([0, 1, 0, 2])
    tokens = ks.towers.tokenize(["liver", "lung", "liver", "brain"])
    ks.train()
    assert not ks.towers.clip.visual.training and not ks.towers.clip.text.training  # frozen -> eval
    assert ks.intra_encoder.training
    objective = ks.objective([5, 2, 1])
    assert isinstance(objective, BaMCoObjective) and objective.ce_weight == 0.5
    terms = ks.loss(ks(images, tokens, stacks), labels, objective)
    assert set(terms) == {"ce_loss", "contrastive_loss", "loss"}
    terms["loss"].backward()
    assert all(p.grad is None for p in ks.towers.parameters())
    for part in (ks.text_head, ks.intra_encoder, ks.classifier, ks.prototype_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(
            part
        ).__name__
    trainable = {n.split(".")[0] for n, p in ks.named_parameters() if p.requires_grad}
    assert trainable == {"text_head", "intra_encoder", "classifier", "prototype_head"}
    # the loss is the documented combination of the library's pieces
    out = ks(images, tokens, stacks)
    want = objective(out.logits, [out.image, out.text, out.intra], labels, out.prototypes)["loss"]
    torch.testing.assert_close(ks.loss(out, labels, objective)["loss"], want)


def test_paper_shapes_parameter_count(tiny_towers_dir, tmp_path):
    """At D = 512 the heads and classifier have the published sizes (official_code_notes.md §2.4)."""
    from bamco_fast.models.heads import PrototypeHead, TextHead
    from bamco_fast.models.tiny import build_tiny_towers

    assert sum(p.numel() for p in TextHead(512, 512).parameters()) == 526_336
    assert sum(p.numel() for p in PrototypeHead(1024, 512).parameters()) == 788_480
    folder = build_tiny_towers(
        tmp_path / "t512", ["liver", "lung"], image_size=32, embed_dim=512, context_length=8
    )
    cfg = KnowledgeSpaceConfig(tower=f"local-dir:{folder}")  # the paper's K = 36, 84 x 84, feature size 12
    ks = KnowledgeSpace(cfg, [f"class {i}" for i in range(285)])
    assert ks.classifier.weight.shape == (1024, 285)  # the published fc.weight [1024, C]
    trainable = sum(p.numel() for p in ks.parameters() if p.requires_grad)
    encoder = sum(p.numel() for p in ks.intra_encoder.parameters())
    assert trainable == encoder + 526_336 + 788_480 + 1024 * 285


def test_config_switches(config, tiny_towers):
    cfg = KnowledgeSpaceConfig(**{**config.to_dict(), "freeze_text_tower": False, "train_text_head": False})
    ks = KnowledgeSpace(cfg, CLASSES, towers=load_towers(config.tower))
    names = {n for n, p in ks.named_parameters() if p.requires_grad}
    assert any(n.startswith("towers.clip.text.") for n in names)
    assert not any(n.startswith(("towers.clip.visual.", "text_head.")) for n in names)
    ks.train()
    assert ks.towers.clip.text.training and not ks.towers.clip.visual.training
    with pytest.raises(ValueError, match="freeze_text_tower is False"):
        ks(text_features=torch.zeros(2, 32))


def test_save_load_roundtrip(ks, tmp_path):
    images, stacks = _batch(2, seed=3)
    tokens = ks.towers.tokenize(["liver", "brain"])
    with torch.no_grad():
        for p in ks.prototype_head.parameters():
            p.add_(0.05)  # weights that differ from any fresh initialisation
        ks.eval()
        before = ks(images, tokens, stacks)
    folder = ks.save(tmp_path / "ks")
    assert sorted(p.name for p in folder.iterdir()) == [
        "classes.json",
        "knowledge_space.json",
        "model.safetensors",
    ]
    umask = os.umask(0)
    os.umask(umask)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in folder.iterdir())
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(folder / "model.safetensors")) if k.startswith("towers.")]
    torch.manual_seed(123)
    loaded = KnowledgeSpace.load(folder).eval()
    assert loaded.class_names == CLASSES and loaded.config == ks.config
    with torch.no_grad():
        after = loaded(images, tokens, stacks)
    for name in ("image", "text", "intra", "logits", "prototypes"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    # portable folder: the towers travel with it
    portable = ks.save(tmp_path / "portable", include_towers=True)
    moved = tmp_path / "elsewhere"
    portable.rename(moved)
    again = KnowledgeSpace.load(moved).eval()
    assert again.towers.name == f"local-dir:{moved / 'towers'}"
    with torch.no_grad():
        assert torch.equal(again(images, tokens, stacks).logits, before.logits)
    with pytest.raises(FileExistsError, match="not empty"):
        ks.save(moved)


def test_bad_inputs(ks, config, tiny_towers, tmp_path):
    images, stacks = _batch(2)
    with pytest.raises(ValueError, match=r"image_features must have shape \(N, 32\), got \(2, 31\)"):
        ks(image_features=torch.zeros(2, 31))
    with pytest.raises(TypeError, match="text_features must be a float tensor"):
        ks(text_features=torch.zeros(2, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="images or image_features, not both"):
        ks(images, image_features=torch.zeros(2, 32))
    with pytest.raises(ValueError, match="images must have shape"):
        ks(images[:, :, :32, :32])
    with pytest.raises(ValueError, match=r"batch \(2\) and intra_stacks batch \(1\)"):
        ks(images, intra_stacks=stacks[:1])
    with pytest.raises(ValueError, match="intra"):
        ks.loss(ks(images), torch.tensor([0, 1]), ks.objective([1, 1, 1]))
    with pytest.raises(ValueError, match="has 2 entries, expected 3"):
        ks.objective([1, 2])
    with pytest.raises(ValueError, match=r"embed_dim \(64\) must equal the towers' embed_dim \(32"):
        KnowledgeSpace(
            KnowledgeSpaceConfig(**{**config.to_dict(), "embed_dim": 64}), CLASSES, towers=tiny_towers
        )
    with pytest.raises(ValueError, match="'lung' twice"):
        KnowledgeSpace(config, ["lung", "lung"], towers=tiny_towers)
    with pytest.raises(ValueError, match="hf-hub:ORG/NAME"):
        KnowledgeSpaceConfig(tower="BiomedCLIP")
    with pytest.raises(ValueError, match="unknown keys \\['embed_dims'\\]; valid keys are"):
        KnowledgeSpaceConfig.from_dict({"embed_dims": 3})
    with pytest.raises(FileNotFoundError, match="not a saved knowledge space"):
        KnowledgeSpace.load(tmp_path)


# --- published checkpoint key names at small widths ------------------------------------------------------
_BRANCHES = ("conv_3x3", "conv_3x3_dil", "conv_3x3_dil2")


def _published_glims(encoder) -> dict[str, torch.Tensor]:
    """Our encoder's weights under the published GLIMS names and shapes (official_code_notes.md §4.6),
    with the published-only tensors (conv biases, unused PReLUs) added."""
    sd, gen = {}, torch.Generator().manual_seed(7)

    def conv(name, weight, slope=None):
        sd[f"{name}.conv.weight"] = weight.detach().clone()
        sd[f"{name}.conv.bias"] = torch.randn(weight.shape[0], generator=gen)
        if slope is not None:
            sd[f"{name}.adn.A.weight"] = slope.detach().reshape(1).clone()

    conv("stem", encoder.stem.weight, encoder.stem.prelu)
    for s, stage in enumerate(encoder.stages):
        for level, block in (("l1", stage.block1), ("l2", stage.block2)):
            base = f"dmsf_{s + 1}.{level}"
            for k, branch in enumerate(_BRANCHES):
                conv(f"{base}.{branch}", block.dw_weight[k].unsqueeze(1))
                sd[f"{base}.{branch}.norm.weight"] = block.norm_weight[k].detach().clone()
                sd[f"{base}.{branch}.norm.bias"] = block.norm_bias[k].detach().clone()
                sd[f"{base}.{branch}.prelu.weight"] = block.prelu[k].detach().reshape(1).clone()
            conv(f"{base}.conv_1x1", block.pw1_weight[:, :, None, None, None], block.prelu[3])
            conv(f"{base}.conv_1x1_2", block.pw2_weight[:, :, None, None, None], block.prelu[4])
            sd[f"{base}.prelu2.weight"] = block.prelu[5].detach().reshape(1).clone()
            sd[f"{base}.prelu.weight"] = torch.full((1,), 0.25)
        conv(f"dmsf_{s + 1}.ds.conv_3x3", stage.down.weight, stage.down.prelu)
    for i in (0, 1, 3):
        sd[f"fc.{i}.weight"] = encoder.head[i].weight.detach().clone()
        sd[f"fc.{i}.bias"] = encoder.head[i].bias.detach().clone()
    return sd


def _published_checkpoint(source: KnowledgeSpace) -> dict:
    sd = {f"GLIMS.{k}": v for k, v in _published_glims(source.intra_encoder).items()}
    for ours, theirs in (("text_head", "head"), ("prototype_head", "head_fc")):
        for k, v in getattr(source, ours).state_dict().items():
            sd[f"{theirs}.{k}"] = v.clone()
    sd["fc.weight"] = source.classifier.weight.detach().clone()  # (2D, C) = [1024, C] at D = 512
    sd["logit_scale"] = torch.tensor(2.6593)
    for k, v in source.towers.clip.state_dict().items():
        sd[f"model.{k}"] = v.clone()
    return {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}


def test_load_official_state_dict(config, tiny_towers):
    cfg = KnowledgeSpaceConfig(**{**config.to_dict(), "intra_layout": "official"})
    torch.manual_seed(1)
    source = KnowledgeSpace(cfg, CLASSES, towers=tiny_towers)
    with torch.no_grad():
        for p in source.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    checkpoint = _published_checkpoint(source)
    torch.manual_seed(2)
    target = KnowledgeSpace(cfg, CLASSES, towers=tiny_towers)
    report = target.load_official_state_dict(checkpoint)
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.notes == []
    assert "fc.weight" in report.loaded_keys and "head_fc.3.bias" in report.loaded_keys
    assert "logit_scale" in report.ignored_keys and "model.visual.head.proj.weight" in report.ignored_keys
    assert "GLIMS.stem.conv.bias" in report.ignored_keys
    images, stacks = _batch(2, seed=4)
    tokens = tiny_towers.tokenize(["liver", "lung"])
    with torch.no_grad():
        want, got = source.eval()(images, tokens, stacks), target.eval()(images, tokens, stacks)
    for name in ("text", "intra", "logits", "prototypes"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), atol=1e-5, rtol=1e-4, msg=name)


def test_load_official_state_dict_errors(config, tiny_towers):
    source = KnowledgeSpace(config, CLASSES, towers=tiny_towers)
    checkpoint = _published_checkpoint(source)["state_dict"]
    other = KnowledgeSpace(config, ["liver", "lung"], towers=tiny_towers)
    with pytest.raises(ValueError, match="2 classes.*3 classes|3 classes; this knowledge space has 2"):
        other.load_official_state_dict(checkpoint)
    broken = dict(checkpoint)
    del broken["module.head.0.bias"]
    broken["module.extra.weight"] = torch.zeros(1)
    target = KnowledgeSpace(config, CLASSES, towers=tiny_towers)
    before = target.text_head[3].weight.detach().clone()
    with pytest.raises(
        KeyError, match=r"missing keys \['text_head.0.bias'\].*unexpected keys \['extra.weight'\]"
    ):
        target.load_official_state_dict(broken)
    assert torch.equal(target.text_head[3].weight, before)  # nothing loaded
    with pytest.warns(UserWarning, match="intra_layout='official'"):
        report = target.load_official_state_dict(broken, strict=False)
    assert report.missing_keys == ["text_head.0.bias"] and report.unexpected_keys == ["extra.weight"]
    torch.testing.assert_close(target.text_head[3].weight, source.text_head[3].weight)
    wrong = dict(checkpoint, **{"module.head.3.weight": torch.zeros(5, 5)})
    with pytest.raises(ValueError, match=r"head.3.weight \(text_head.3.weight here\) needs shape \(32, 32\)"):
        target.load_official_state_dict(wrong)


def test_load_official_tower_weights(config, tiny_towers_dir):
    source = KnowledgeSpace(config, CLASSES, towers=load_towers(f"local-dir:{tiny_towers_dir}"))
    with torch.no_grad():
        source.towers.clip.visual.head.proj.weight.mul_(-1.0)
    checkpoint = _published_checkpoint(source)
    target = KnowledgeSpace(config, CLASSES, towers=load_towers(f"local-dir:{tiny_towers_dir}"))
    images = _batch(2)[0]
    with torch.no_grad():
        assert not torch.allclose(target.encode_image(images), source.encode_image(images))
        with pytest.warns(UserWarning, match="intra_layout"):
            report = target.load_official_state_dict(checkpoint, load_towers=True)
        assert "model.visual.head.proj.weight" in report.loaded_keys and report.missing_keys == []
        assert torch.equal(target.encode_image(images), source.encode_image(images))
