"""The knowledge-driven VQA model on tiny towers and tiny Llama / GPT-2 models loaded from folders.

Covers the prompt layout and answer-only labels, splicing by token id, which parameters train, batched
greedy generation equal to one-at-a-time generation, save -> load and merge reproducing predictions,
ablation switches and the errors of bad input.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from vqa_fixtures import ANSWERS, CLASSES, K_INTRA, KIND, QIDS, QUESTIONS, _bank, _images, _model, _train

from bamco_fast.models.vqa import VQAModel, VQAModelConfig, build_vqa_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prompt_layout_and_answer_only_labels(lm_dirs, ks, ks_dir):
    model = _model(lm_dirs, ks, ks_dir)
    ids = model.token_ids
    grid = ks.towers.patch_grid
    n_img = (grid[0] // 2) * (grid[1] // 2)
    assert model.prefix_ids() == [ids["<im_patch>"]] * n_img + [ids["<kg_token>"], ids["<ic_token>"]]
    batch = model.encode_batch(QUESTIONS, ANSWERS)
    tok = model.tokenizer
    for row, (q, a) in enumerate(zip(QUESTIONS, ANSWERS)):
        mask = batch["attention_mask"][row].bool()
        assert not mask[: (~mask).sum()].any()  # left padding
        seq = batch["input_ids"][row][mask].tolist()
        q_ids = tok(" " + q, add_special_tokens=False)["input_ids"]
        a_ids = tok(" " + a, add_special_tokens=False)["input_ids"]
        assert seq == model.prefix_ids() + q_ids + a_ids + [tok.eos_token_id]
        labels = batch["labels"][row]
        assert labels[labels != -100].tolist() == [*a_ids, tok.eos_token_id]
        assert labels[-len(a_ids) - 1 :].tolist() == [*a_ids, tok.eos_token_id]
    prompt = model.encode_batch(QUESTIONS[:2])
    assert "labels" not in prompt
    assert prompt["input_ids"][0, -1].item() != tok.eos_token_id
    short = VQAModelConfig(llm=str(lm_dirs["llama"]), lora_r=8, max_length=n_img + 2 + 5)
    cut = build_vqa_model(short, ks, _bank(ks)).encode_batch(QUESTIONS[2:3], ["a long answer of many words"])
    assert cut["input_ids"].shape[1] == short.max_length
    assert cut["labels"][0, -1].item() == tok.eos_token_id


def test_placeholders_are_found_by_token_id(lm_dirs, ks, ks_dir):
    model = _model(lm_dirs, ks, ks_dir).eval()
    feats, retrieved = model.prefix_features(_images(ks, 2), QUESTIONS[:2], qids=QIDS[:2])
    assert all(r in CLASSES for r in retrieved)
    tok = model.tokenizer
    q = tok(" what organ", add_special_tokens=False)["input_ids"]
    ids = model.token_ids
    # placeholders in an unusual order and place, different in each row: splicing follows the ids
    row0 = q + [ids["<ic_token>"]] + [ids["<im_patch>"]] * feats["<im_patch>"].shape[1] + [ids["<kg_token>"]]
    row1 = [ids["<kg_token>"], ids["<ic_token>"]] + q + [ids["<im_patch>"]] * feats["<im_patch>"].shape[1]
    input_ids = torch.tensor([row0, row1])
    with torch.no_grad():
        embeds = model.splice(input_ids, feats)
        plain = model.llm.get_input_embeddings()(input_ids)
    for b in range(2):
        for name, values in feats.items():
            where = input_ids[b] == ids[name]
            torch.testing.assert_close(embeds[b, where], values[b], rtol=0, atol=0)
        text = ~sum(input_ids[b] == i for i in ids.values()).bool()
        torch.testing.assert_close(embeds[b, text], plain[b, text], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expected 1 <kg_token> tokens per row, found \[0\]"):
        model.splice(torch.tensor([[*row0[:-1], ids["<ic_token>"]]]), {k: v[:1] for k, v in feats.items()})


@pytest.mark.parametrize("kind", KIND)
def test_training_updates_only_projectors_and_adapters(lm_dirs, ks, ks_dir, kind):
    model = _model(lm_dirs, ks, ks_dir, kind)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith(("image_projector", "knowledge_projector", "intra_projector")) or "lora_" in n
        for n in trainable
    )
    assert not any(n.startswith("knowledge_space") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = _train(model, ks, steps=6)
    assert losses[-1] < losses[0]
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert any("lora_B" in n for n in moved) and any(n.startswith("intra_projector") for n in moved)
    assert not model.knowledge_space.training  # frozen parts stay in eval mode while training


def test_trainable_state_dict_round_trip(lm_dirs, ks, ks_dir):
    model = _model(lm_dirs, ks, ks_dir, "gpt2")
    _train(model, ks, steps=2, lr=1e-2)
    state = model.trainable_state_dict()
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    fresh = _model(lm_dirs, ks, ks_dir, "gpt2")
    fresh.load_trainable_state_dict(state)
    images = _images(ks)
    assert fresh.generate(images, QUESTIONS, max_new_tokens=6) == model.generate(
        images, QUESTIONS, max_new_tokens=6
    )
    with pytest.raises(ValueError, match="trainable names differ"):
        _model(lm_dirs, ks, ks_dir, "gpt2", use_image=False).load_trainable_state_dict(state)


def test_lora_targets_and_modes(lm_dirs, ks, ks_dir):
    llama = _model(lm_dirs, ks, ks_dir, "llama")
    gpt2 = _model(lm_dirs, ks, ks_dir, "gpt2")
    llama_targets = {n.split(".")[-1] for n, m in llama.llm.named_modules() if hasattr(m, "lora_A")}
    gpt2_targets = {n.split(".")[-1] for n, m in gpt2.llm.named_modules() if hasattr(m, "lora_A")}
    assert llama_targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert gpt2_targets == {"c_attn", "c_proj", "c_fc"}  # GPT-2's Conv1D layers
    lora_a = next(m for m in llama.llm.modules() if hasattr(m, "lora_A")).lora_A["default"]
    assert lora_a.out_features == 8
    whole = _model(lm_dirs, ks, ks_dir, "gpt2", lora="none")
    assert all(p.requires_grad for p in whole.llm.parameters())
    frozen = _model(lm_dirs, ks, ks_dir, "gpt2", lora="frozen")
    assert not any(p.requires_grad for p in frozen.llm.parameters())
    assert VQAModelConfig(llm="x").lora_r == 64 and VQAModelConfig(llm="x").lora_alpha == 16


@pytest.mark.parametrize("kind", KIND)
def test_batched_generation_equals_one_at_a_time(lm_dirs, ks, ks_dir, kind):
    model = _model(lm_dirs, ks, ks_dir, kind)
    _train(model, ks, steps=3, lr=1e-2)
    model.intra_bank = _bank(ks, "question")  # one seeded stack per question
    images = _images(ks)
    batched = model.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=8)
    singles = [
        model.generate(images[i : i + 1], [q], qids=[k], max_new_tokens=8)[0]
        for i, (q, k) in enumerate(zip(QUESTIONS, QIDS))
    ]
    assert [a.tokens for a in batched] == [a.tokens for a in singles]
    assert [a.retrieved_entity for a in batched] == [a.retrieved_entity for a in singles]
    assert any(len(a.tokens) > 0 for a in batched)
    again = model.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=8)
    assert again == batched  # deterministic, incl. the seeded intra-class draw
    assert all(
        a.text == model.tokenizer.decode(list(a.tokens), skip_special_tokens=True).strip() for a in batched
    )


@pytest.mark.parametrize(("kind", "lora"), [("llama", "lora"), ("gpt2", "lora"), ("gpt2", "none")])
def test_save_load_and_merge_reproduce_predictions(lm_dirs, ks, ks_dir, tmp_path, kind, lora):
    model = _model(lm_dirs, ks, ks_dir, kind, lora=lora)
    _train(model, ks, steps=3, lr=1e-2)
    images = _images(ks)
    expected = model.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=8)
    run = model.save_trainable(tmp_path / "run")
    meta = json.loads((run / "vqa.json").read_text())
    assert meta["config"]["knowledge_space"] == str(ks_dir.absolute())
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    modes = {f: oct((run / f).stat().st_mode & 0o777) for f in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes  # safetensors' 0600 included
    assert not any("open_clip" in f for f in files)  # the frozen towers are not copied
    if lora == "lora":
        from safetensors.torch import load_file

        adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
        assert adapter and all("lora_" in k for k in adapter)  # adapters only, no embeddings
        assert not any(f.startswith("llm/") for f in files)
    loaded = VQAModel.load(run, intra_bank=_bank(ks))  # knowledge space loaded from the reference
    assert loaded.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=8) == expected
    assert torch.equal(
        model(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"],
        loaded(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"],
    )
    if lora == "lora":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        merged_dir = model.merge(tmp_path / "merged")
        assert AutoModelForCausalLM.from_pretrained(merged_dir / "llm").get_input_embeddings().weight.shape[
            0
        ] == len(AutoTokenizer.from_pretrained(merged_dir / "llm"))
        merged = VQAModel.load(merged_dir, knowledge_space=ks, intra_bank=_bank(ks))
        assert [a.tokens for a in merged.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=8)] == [
            a.tokens for a in expected
        ]


def test_ablation_switches(lm_dirs, ks, ks_dir):
    text_only = _model(lm_dirs, ks, ks_dir, "gpt2", bank=None, use_image=False, use_intra_class=False)
    assert text_only.prefix_ids() == [text_only.token_ids["<kg_token>"]]
    assert text_only.image_projector is None and text_only.intra_projector is None
    out = text_only(None, QUESTIONS, ANSWERS)  # no image needed
    assert torch.isfinite(out["loss"])
    answers = text_only.generate(None, QUESTIONS, max_new_tokens=3)
    assert all(a.retrieved_entity is None for a in answers)
    no_knowledge = _model(lm_dirs, ks, ks_dir, "gpt2", use_knowledge=False, knowledge_tokens=2)
    assert no_knowledge.token_ids["<kg_token>"] not in no_knowledge.prefix_ids()
    two = _model(lm_dirs, ks, ks_dir, "gpt2", knowledge_tokens=2)
    assert two.prefix_ids().count(two.token_ids["<kg_token>"]) == 2
    published = _model(lm_dirs, ks, ks_dir, "gpt2", patch_positional=False).eval()
    correct = _model(lm_dirs, ks, ks_dir, "gpt2").eval()
    a = published.prefix_features(_images(ks, 2), QUESTIONS[:2], qids=QIDS[:2])[0]["<im_patch>"]
    b = correct.prefix_features(_images(ks, 2), QUESTIONS[:2], qids=QIDS[:2])[0]["<im_patch>"]
    assert not torch.allclose(a, b)  # positional embeddings change the patch tokens
    entities = _model(lm_dirs, ks, ks_dir, "gpt2", knowledge_input="entities").eval()
    with pytest.raises(ValueError, match="knowledge_texts"):
        entities.generate(_images(ks), QUESTIONS, qids=QIDS, max_new_tokens=2)
    by_entity = entities.prefix_features(
        _images(ks), QUESTIONS, qids=QIDS, knowledge_texts=["liver", "", "brain", ""]
    )[0]
    by_question = correct.prefix_features(_images(ks), QUESTIONS, qids=QIDS)[0]
    torch.testing.assert_close(by_entity["<kg_token>"][1], by_question["<kg_token>"][1])  # empty -> question
    assert not torch.allclose(by_entity["<kg_token>"][0], by_question["<kg_token>"][0])


def test_entities_input_extracts_saves_and_reloads(lm_dirs, ks, ks_dir, tmp_path):
    from bamco_fast.models.entity_input import ENTITIES_FILE, EntityTexts

    torch.manual_seed(0)
    config = VQAModelConfig(
        llm=str(lm_dirs["gpt2"]), knowledge_space=str(ks_dir), lora_r=8, knowledge_input="entities"
    )
    model = build_vqa_model(config, ks, _bank(ks), entities=EntityTexts(CLASSES)).eval()
    assert model.entities(QUESTIONS) == ["", "lung", "brain", ""]
    images = _images(ks)
    found = model.prefix_features(images, QUESTIONS, qids=QIDS)[0]["<kg_token>"]
    given = model.prefix_features(images, QUESTIONS, qids=QIDS, knowledge_texts=["", "lung", "brain", ""])[0]
    torch.testing.assert_close(found, given["<kg_token>"], rtol=0, atol=0)
    expected = model.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=6)
    run = model.save_trainable(tmp_path / "run")
    assert json.loads((run / ENTITIES_FILE).read_text())["names"] == CLASSES
    loaded = VQAModel.load(run, intra_bank=_bank(ks))
    assert loaded.entities.names == tuple(CLASSES)
    assert loaded.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=6) == expected
    (run / ENTITIES_FILE).unlink()
    with pytest.raises(ValueError, match=ENTITIES_FILE):
        VQAModel.load(run, intra_bank=_bank(ks))
    question_run = _model(lm_dirs, ks, ks_dir, "gpt2").save_trainable(tmp_path / "question")
    assert not (question_run / ENTITIES_FILE).exists()  # only the entities input writes it


def test_class_sampling_cache_is_exact(lm_dirs, ks, ks_dir):
    model = _model(lm_dirs, ks, ks_dir, "gpt2").eval()
    images = _images(ks)
    feats, retrieved = model.prefix_features(images, QUESTIONS, qids=QIDS)
    assert sorted(model._intra_cache) == sorted({CLASSES.index(r) for r in retrieved})
    bank = model.intra_bank
    with torch.no_grad():
        classes = bank.retrieve(ks.encode_image(images))
        direct = ks.encode_intra_class(bank.stacks(classes, ["any"] * len(QUESTIONS), K_INTRA))
        expected = model.intra_projector(direct)
    torch.testing.assert_close(feats["<ic_token>"], expected, rtol=1e-4, atol=1e-5)  # batch-size rounding
    with torch.no_grad():
        for c, cached in model._intra_cache.items():  # bit-exact: each class is encoded alone
            assert torch.equal(cached, ks.encode_intra_class(bank.stacks([c], ["other"], K_INTRA))[0])
    model.intra_bank = _bank(ks, "question")
    assert not model._intra_cache  # a new bank empties the cache
    model.prefix_features(images, QUESTIONS, qids=QIDS)
    assert not model._intra_cache  # per-question draws are never cached


def test_clear_errors(lm_dirs, ks, ks_dir, tmp_path):
    model = _model(lm_dirs, ks, ks_dir, "llama", bank="question")
    with pytest.raises(ValueError, match=r"questions\[1\]: expected a non-empty question"):
        model.encode_batch(["ok?", "  "])
    with pytest.raises(ValueError, match="qids: expected 4 question ids"):
        model.generate(_images(ks), QUESTIONS, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"images: expected a \(4, 3, S, S\)"):
        model(None, QUESTIONS, ANSWERS, qids=QIDS)
    with pytest.raises(ValueError, match="knowledge_space: a VQA model needs its knowledge space"):
        VQAModel(VQAModelConfig(llm="x"), None, None, None)
    with pytest.raises(ValueError, match="lora: expected one of"):
        VQAModelConfig(llm="x", lora="qlora")
    with pytest.raises(ValueError, match="unknown keys"):
        VQAModelConfig.from_dict({"llm": "x", "lr": 1})
    run = model.save_trainable(tmp_path / "run")
    with pytest.raises(ValueError, match="hidden size 96 does not match the saved projectors' 64"):
        VQAModel.load(run, knowledge_space=ks, llm=str(lm_dirs["wide"]))
    with pytest.raises(FileNotFoundError, match="the run's knowledge space .*gone.* is not a folder"):
        VQAModel.load(run, knowledge_space_dir=tmp_path / "gone")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(lm_dirs["llama"]).save_pretrained(run / "tokenizer")
    with pytest.raises(ValueError, match="lacks the special tokens"):
        VQAModel.load(run, knowledge_space=ks)


def test_entity_texts_from_the_offline_extractor(tmp_path):
    pytest.importorskip(
        "scispacy", reason="the offline extractor needs spaCy and scispaCy (bamco_fast[knowledge])"
    )
    from bamco_fast.knowledge.extract import OfflineExtractor
    from bamco_fast.knowledge.kb_memory import InMemoryKnowledgeBase
    from bamco_fast.knowledge.schema import Concept
    from bamco_fast.models.entity_input import entity_texts

    kb = InMemoryKnowledgeBase(
        tmp_path / "kb.json",
        [Concept("C1", "Liver"), Concept("C2", "Lung", aliases=("lungs",)), Concept("C3", "Brain edema")],
    )
    texts = entity_texts(
        OfflineExtractor(kb),
        ["is the liver larger than the lungs?", "where is the brain edema? the lung?", "what is this?"],
    )
    assert texts == ["Liver, Lung", "Brain edema, Lung", ""]
