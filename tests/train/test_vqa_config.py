"""Presets and overrides of the VQA stage configuration."""

from __future__ import annotations

import pytest

from bamco_fast.train.core.config import ConfigError, apply_overrides, parse_set
from bamco_fast.train.vqa.config import LLMS, PRESETS


def preset(name):
    return PRESETS[name]()


def test_paper_presets_carry_the_published_values():
    config = preset("slake-llama-3.2-1b")
    assert config.model.llm == "meta-llama/Llama-3.2-1B"
    assert (config.model.lora, config.model.lora_r, config.model.lora_alpha) == ("lora", 64, 16)
    assert config.optim.lr == 1e-4 and config.optim.weight_decay == 0.0 and config.warmup_ratio == 0.1
    assert config.loop.epochs == 5 and config.loop.precision == "bf16"
    assert preset("vqa-rad-gpt2-xl").model.llm == LLMS["gpt2-xl"]
    assert preset("pathvqa-llama-3.2-3b").model.plain_towers  # no PathVQA knowledge source offline
    assert len(PRESETS) == 16


def test_every_model_field_is_settable_and_bad_values_are_named():
    config = preset("demo-tiny")
    for key, value in (
        ("model.dtype", "bfloat16"),
        ("model.lora_dropout", "0.05"),
        ("model.pool", "1"),
        ("model.knowledge_tokens", "2"),
        ("model.answer_only_logits", "false"),
    ):
        assert str(
            getattr(apply_overrides(config, parse_set([f"{key}={value}"])).model, key.split(".")[1])
        ).lower() in (value, str(float(value)) if value[0].isdigit() else value)
    with pytest.raises(ConfigError, match="unknown config key 'model.lora_rank'"):
        apply_overrides(config, parse_set(["model.lora_rank=8"]))
    with pytest.raises(ConfigError, match="data.eval_split"):
        apply_overrides(config, parse_set(["data.eval_split=dev"]))
    changed = apply_overrides(
        config, parse_set(["model.llm=/models/llama", "loop.epochs=2", "model.use_image=false"])
    )
    assert (changed.model.llm, changed.loop.epochs, changed.model.use_image) == ("/models/llama", 2, False)
    with pytest.raises(
        ConfigError, match="'model.'.*knowledge_input: expected 'question' when use_knowledge is false"
    ):
        apply_overrides(config, parse_set(["model.knowledge_input=entities", "model.use_knowledge=false"]))
    entities = apply_overrides(config, parse_set(["model.knowledge_input=entities"]))
    both = ["model.use_knowledge=false", "model.knowledge_input=question"]  # checked once, on the result
    assert not apply_overrides(entities, parse_set(both)).model.use_knowledge
