"""The VQA model on each paper LLM family at tiny width but with the real tokenizers' conventions.

The folders come from :mod:`bamco_fast.models.random_weights` at ``width="tiny"``: the published
vocabulary sizes (128,256 / 50,257 rows) and special tokens, no pad token, bos added by Llama 3's
tokenizer and not by GPT-2's (whose bos = eos = ``<|endoftext|>``). Covered: the pad-less path, LoRA
target names per family with the trainable count from the shapes, answer-only logits equal to the full
logits, merge, and batched generation equal to one-at-a-time generation.
"""

from __future__ import annotations

import pytest
import torch
from vqa_fixtures import ANSWERS, LM_TEXTS, QIDS, QUESTIONS, _bank, _images, _train

from bamco_fast.models.random_llms import build_random_llm
from bamco_fast.models.vqa import VQAModel, VQAModelConfig, build_vqa_model

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {
    "llama-3.2-1b": {
        "bos": 128000,
        "eos": 128001,
        "targets": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    },
    "llama-3.2-3b": {
        "bos": 128000,
        "eos": 128001,
        "targets": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    },
    "gpt2-xl": {"bos": 50256, "eos": 50256, "targets": {"c_attn", "c_proj", "c_fc"}},
}
NAMES = list(FAMILIES)
R = 4


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    texts = [*LM_TEXTS, *QUESTIONS, *ANSWERS] * 4
    return {name: build_random_llm(name, root / name, texts, width="tiny", seed=1) for name in NAMES}


def _model(family_dirs, ks, ks_dir, name, **overrides) -> VQAModel:
    torch.manual_seed(0)
    config = VQAModelConfig(
        llm=str(family_dirs[name]), knowledge_space=str(ks_dir), lora_r=R, projector_dropout=0.0, **overrides
    )
    return build_vqa_model(config, ks, _bank(ks))


@pytest.mark.parametrize("name", NAMES)
def test_pad_less_tokenizers_follow_the_real_conventions(family_dirs, ks, ks_dir, name):
    from transformers import AutoTokenizer

    facts = FAMILIES[name]
    raw = AutoTokenizer.from_pretrained(family_dirs[name])
    assert raw.pad_token is None and raw.bos_token_id == facts["bos"] and raw.eos_token_id == facts["eos"]
    model = _model(family_dirs, ks, ks_dir, name)
    tok = model.tokenizer
    assert tok.pad_token_id == facts["eos"]  # padding with eos (masked out)
    assert model.bos_ids == ([facts["bos"]] if name.startswith("llama") else [])
    batch = model.encode_batch(QUESTIONS, ANSWERS)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    for row in range(len(QUESTIONS)):
        start = int((mask[row] == 0).sum())
        assert (ids[row, :start] == facts["eos"]).all() and (labels[row, :start] == -100).all()
        assert ids[row, start:].tolist()[: len(model.prefix_ids())] == model.prefix_ids()
        answer = labels[row][labels[row] != -100].tolist()
        assert answer[-1] == facts["eos"] and tok.decode(answer[:-1]).strip() == ANSWERS[row]
    rows = model.llm.get_input_embeddings().weight.shape[0]
    assert rows == len(tok) == len(raw) + 3  # three placeholders appended after the full vocabulary


@pytest.mark.parametrize("name", NAMES)
def test_lora_targets_every_attention_and_mlp_projection_of_the_family(family_dirs, ks, ks_dir, name):
    from peft.tuners.lora import LoraLayer

    model = _model(family_dirs, ks, ks_dir, name)
    layers = {n: m for n, m in model.llm.named_modules() if isinstance(m, LoraLayer)}
    assert {n.rsplit(".", 1)[-1] for n in layers} == FAMILIES[name]["targets"]
    config = model.llm.get_base_model().config
    per_layer = len(FAMILIES[name]["targets"]) + (1 if name == "gpt2-xl" else 0)  # GPT-2 has two c_proj
    assert len(layers) == per_layer * config.num_hidden_layers
    expected = 0
    for module in layers.values():
        weight = module.get_base_layer().weight
        fan_in, fan_out = (
            (weight.shape[0], weight.shape[1]) if name == "gpt2-xl" else (weight.shape[1], weight.shape[0])
        )
        expected += R * (fan_in + fan_out)  # A: r x in, B: out x r
    lora = sum(p.numel() for n, p in model.llm.named_parameters() if p.requires_grad)
    assert lora == expected
    assert not any(p.requires_grad for n, p in model.llm.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("name", NAMES)
def test_answer_only_logits_equal_the_full_logits_at_the_real_vocabulary(family_dirs, ks, ks_dir, name):
    images = _images(ks)
    fast = _model(family_dirs, ks, ks_dir, name)
    full = _model(family_dirs, ks, ks_dir, name, answer_only_logits=False)
    assert (
        fast.answer_only_logits and fast.llm.get_base_model().get_output_embeddings().weight.shape[0] > 50_000
    )
    for m in (fast, full):
        m.llm.double()
        for p in (m.image_projector, m.knowledge_projector, m.intra_projector):
            p.double()
        m.train()
    torch.manual_seed(3)
    a = fast(images.double(), QUESTIONS, ANSWERS, qids=QIDS)["loss"]
    torch.manual_seed(3)
    b = full(images.double(), QUESTIONS, ANSWERS, qids=QIDS)["loss"]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    grads_a = torch.autograd.grad(a, [p for p in fast.parameters() if p.requires_grad])
    grads_b = torch.autograd.grad(b, [p for p in full.parameters() if p.requires_grad])
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "gpt2-xl"])
def test_batched_generation_and_merge_reproduce_one_at_a_time(family_dirs, ks, ks_dir, tmp_path, name):
    model = _model(family_dirs, ks, ks_dir, name)
    _train(model, ks, steps=3, lr=2e-2)
    images = _images(ks)
    batched = model.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=6)
    singles = [
        model.generate(images[i : i + 1], QUESTIONS[i : i + 1], qids=QIDS[i : i + 1], max_new_tokens=6)[0]
        for i in range(len(QUESTIONS))
    ]
    assert [a.tokens for a in batched] == [a.tokens for a in singles]
    merged = VQAModel.load(model.merge(tmp_path / "merged"), knowledge_space=ks, intra_bank=_bank(ks))
    assert [a.tokens for a in merged.generate(images, QUESTIONS, qids=QIDS, max_new_tokens=6)] == [
        a.tokens for a in batched
    ]
