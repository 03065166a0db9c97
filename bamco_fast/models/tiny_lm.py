"""Tiny causal language models built in code, saved as ordinary Hugging Face folders.

:func:`build_tiny_causal_lm` writes a randomly initialised Llama or GPT-2 (hidden width 64, 2 layers by
default) together with a byte-level BPE tokenizer trained on the given texts. The folder loads back
through the real loading path, ``AutoModelForCausalLM.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)``, so tests and CPU demos exercise exactly the code that loads
Llama 3.2 or GPT-2 XL.

Tokenizer: byte-level BPE (``tokenizers``), stable across runs for the same texts; special tokens
``<pad>`` (id 0), ``<s>`` (bos, id 1) and ``</s>`` (eos, id 2); no bos/eos is added automatically (as
GPT-2's tokenizer); padding on the left (as generation needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["TINY_LM_KINDS", "build_tiny_causal_lm"]

TINY_LM_KINDS = ("llama", "gpt2")
_SPECIALS = ("<pad>", "<s>", "</s>")


def _train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer


def _model_config(
    kind: str,
    n_vocab: int,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_positions: int,
    special_ids: dict[str, int],
):
    """The Hugging Face config and model class of a tiny ``kind`` LM (``"llama"`` or ``"gpt2"``).

    ``special_ids`` holds ``bos_token_id``, ``eos_token_id`` and ``pad_token_id``. Llama: intermediate
    width ``2 * hidden_size``, ``max(1, num_heads // 2)`` key/value heads, untied embeddings; GPT-2:
    ``initializer_range=0.2``.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if kind == "llama":
        config = LlamaConfig(
            vocab_size=n_vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=max(1, num_heads // 2),
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            **special_ids,
        )
        model_cls = LlamaForCausalLM
    else:
        config = GPT2Config(
            vocab_size=n_vocab,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_positions=max_positions,
            initializer_range=0.2,
            **special_ids,
        )
        model_cls = GPT2LMHeadModel
    return config, model_cls


def build_tiny_causal_lm(
    folder: Path | str,
    kind: str = "llama",
    texts: Sequence[str] = (),
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 512,
    max_positions: int = 512,
) -> Path:
    """Write a tiny randomly initialised causal LM and its tokenizer to ``folder``; return the folder.

    Args:
        folder: output folder (created; existing files of the same names are overwritten).
        kind: ``"llama"`` (``LlamaConfig``: 4 heads, 2 key/value heads, untied embeddings, rotary
            positions) or ``"gpt2"`` (``GPT2Config``: learned positions, tied embeddings,
            ``initializer_range=0.2`` so that greedy decoding of the untrained model does not repeat
            a single token).
        texts: corpus for the byte-level BPE tokenizer (every byte is in the vocabulary, so any text
            can be encoded even when ``texts`` is empty).
        seed: seed of the weight initialisation (the global RNG state is restored afterwards).
        hidden_size, num_layers, num_heads: model width, depth and attention heads.
        vocab_size: target BPE vocabulary size (at least the 256 bytes plus the 3 specials).
        max_positions: longest sequence the model accepts.
    """
    import torch
    from transformers import PreTrainedTokenizerFast

    if kind not in TINY_LM_KINDS:
        raise ValueError(f"kind: expected one of {TINY_LM_KINDS}, got {kind!r}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size: expected a multiple of num_heads={num_heads}, got {hidden_size}")
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of strings, got a single string")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    backend = _train_tokenizer(texts, vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=max_positions,
    )
    ids = {name: backend.token_to_id(name) for name in _SPECIALS}
    n_vocab = backend.get_vocab_size()
    common = {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"]}
    config, model_cls = _model_config(
        kind,
        n_vocab,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_positions=max_positions,
        special_ids=common,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
