"""Tiny causal LMs built in code load back through AutoModelForCausalLM / AutoTokenizer."""

from __future__ import annotations

import pytest
import torch

from bamco_fast.models.tiny_lm import build_tiny_causal_lm

TEXTS = ["what organ is shown in this image?", "the liver is enlarged", "yes", "no", "is there a mass?"] * 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_builds_and_loads_through_auto_classes(tmp_path, kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_causal_lm(tmp_path / kind, kind, TEXTS, seed=3)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == kind
    assert model.get_input_embeddings().embedding_dim == 64
    assert model.config.num_hidden_layers == 2
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.padding_side == "left"
    assert len(tok) == model.get_input_embeddings().weight.shape[0]
    text = "is the liver enlarged? ünïcode"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: any text round-trips, no bos/eos added
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok))
    assert torch.isfinite(logits).all()


def test_same_seed_same_weights_and_vocab(tmp_path):
    from safetensors.torch import load_file

    a = build_tiny_causal_lm(tmp_path / "a", "llama", TEXTS, seed=1)
    b = build_tiny_causal_lm(tmp_path / "b", "llama", TEXTS, seed=1)
    c = build_tiny_causal_lm(tmp_path / "c", "llama", TEXTS, seed=2)
    wa, wb, wc = (load_file(str(f / "model.safetensors")) for f in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind: expected one of"):
        build_tiny_causal_lm(tmp_path, "bert", TEXTS)
    with pytest.raises(TypeError, match="texts"):
        build_tiny_causal_lm(tmp_path, "gpt2", "one string")
