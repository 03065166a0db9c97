"""Merging LoRA adapters shard by shard equals peft's ``merge_and_unload`` bit for bit, at one shard of memory."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bamco_fast.models.lora import apply_lora, merged_shards, write_merged

pytestmark = pytest.mark.usefixtures("one_thread")


def _adapted(folder):
    from transformers import AutoModelForCausalLM

    llm = apply_lora(AutoModelForCausalLM.from_pretrained(folder), "lora", r=4, alpha=8)
    with torch.no_grad():  # B starts at zero: give the adapters a real delta
        for name, param in llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return llm


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_sharded_merge_equals_merge_and_unload(lm_dirs, tmp_path, kind):
    from transformers import AutoModelForCausalLM

    llm = _adapted(lm_dirs[kind])
    expected = copy.deepcopy(llm).merge_and_unload().state_dict()
    write_merged(llm, tmp_path / "merged", max_shard_bytes=40_000)  # several shards
    index = json.loads((tmp_path / "merged" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    assert not list((tmp_path / "merged").glob(".*"))  # no temporary shard left behind
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    tied = llm.get_base_model().config.tie_word_embeddings
    assert ("lm_head.weight" in index["weight_map"]) == (not tied)  # a tied head is not written twice
    ids = torch.tensor([[5, 9, 17, 3]])
    with torch.no_grad():
        torch.testing.assert_close(
            AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits,
            llm(ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )


def test_shards_hold_at_most_the_budget_and_every_weight_once(lm_dirs):
    llm = _adapted(lm_dirs["gpt2"])
    shards = list(merged_shards(llm, max_shard_bytes=30_000))
    keys = [k for shard in shards for k in shard]
    assert len(keys) == len(set(keys))
    assert not any("lora_" in k or "base_layer" in k for k in keys)
    for shard in shards:
        sizes = [t.nbytes for t in shard.values()]
        assert sum(sizes) <= 30_000 or len(sizes) == 1  # a single tensor larger than the budget is alone
