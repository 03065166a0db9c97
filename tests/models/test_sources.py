"""Model locations are checked before any weight loads: wrong folders, oversized tokenizers, offline hubs."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from bamco_fast.models.sources import ModelSourceError, check_causal_lm, locate
from bamco_fast.models.vqa_io import load_llm

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_causal_lm_folder_passes(lm_dirs):
    for kind, arch in (("llama", "LlamaForCausalLM"), ("gpt2", "GPT2LMHeadModel")):
        info = check_causal_lm(str(lm_dirs[kind]))
        assert info.architecture == arch and info.tokenizer_size == info.vocab_size > 0


def test_not_a_causal_lm_is_named(tmp_path, tiny_towers_dir):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(
        ModelSourceError, match=r"model\.llm: .*bert holds a BertModel, not a causal language model"
    ):
        check_causal_lm(str(tmp_path / "bert"))
    with pytest.raises(ModelSourceError, match=r"expected a folder holding config\.json, got .* holding \["):
        check_causal_lm(str(tiny_towers_dir))  # open_clip towers
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="which is a file"):
        check_causal_lm(str(tmp_path / "file.bin"))
    with pytest.raises(ModelSourceError, match="which does not exist"):
        check_causal_lm(str(tmp_path / "no" / "such" / "folder"))


def test_a_tokenizer_larger_than_the_embedding_is_refused(lm_dirs, tmp_path):
    folder = shutil.copytree(lm_dirs["llama"], tmp_path / "small-embedding")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] -= 7
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelSourceError, match=r"tokenizer of .* has [\d,]+ tokens but the model's embedding has"
    ):
        check_causal_lm(str(folder))


def test_uncached_hub_name_offline_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(
        ModelSourceError,
        match=r"not in the local Hugging Face cache and HF_HUB_OFFLINE is set.*model\.llm=/path/to/Llama-3\.2-1B",
    ):
        check_causal_lm("meta-llama/Llama-3.2-1B")
    assert time.perf_counter() - start < 5
    with pytest.raises(ModelSourceError, match="towers: "):
        locate(
            "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            key="towers",
            marker="open_clip_config.json",
        )


def test_truncated_weights_are_a_clear_error(lm_dirs, tmp_path):
    folder = shutil.copytree(lm_dirs["gpt2"], tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelSourceError, match=r"model\.llm: cannot load the language model"):
        load_llm(folder)
