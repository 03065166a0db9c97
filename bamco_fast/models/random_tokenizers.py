"""Byte-level BPE tokenizers trained locally, with the special tokens and ids of Llama 3.2 and GPT-2.

The merges are learned from the given texts (e.g. the questions and answers of a VQA training split), so
ordinary text tokenises into a few thousand real entries. The regular vocabulary is then padded with
unreachable *filler* entries up to the real model's size, so that every id the real tokenizer can emit
exists here and the special tokens sit at the real ids:

================  ====================  ==========================================================
tokenizer         regular ids           special tokens
================  ====================  ==========================================================
Llama 3.2         0 .. 127,999          128,000 .. 128,255 (:data:`LLAMA3_SPECIAL_TOKENS`);
                                        ``<|begin_of_text|>`` (128000) is bos and is added at the
                                        start of every encoding, ``<|end_of_text|>`` (128001) is
                                        eos and is never added; no pad token. 128,256 in all.
GPT-2             0 .. 50,255           ``<|endoftext|>`` = 50,256 is bos, eos and unk; nothing is
                                        added to an encoding; no pad token; ``model_max_length``
                                        1024. 50,257 in all.
================  ====================  ==========================================================

Filler entries are named ``"\\u2400filler<ID>"``. U+2400 is not one of the 256 characters a byte-level
pre-tokeniser maps bytes to, so no pre-tokenised word and no merge result can equal a filler: encoding
never produces one. Decoding a filler id (a random model may generate one) gives its name.

Sources of the conventions (the files the real tokenizers are loaded from):

* Llama 3.2: the hub repos ``meta-llama/Llama-3.2-1B`` / ``-3B``, ``tokenizer.json`` and
  ``tokenizer_config.json``, as written by ``transformers``'
  ``src/transformers/models/llama/convert_llama_weights_to_hf.py`` (``DEFAULT_LLAMA_SPECIAL_TOKENS["3.2"]``:
  the 11 named tokens, then ``<|reserved_special_token_3|>`` .. ``<|reserved_special_token_247|>``; bos
  added by a ``TemplateProcessing`` post-processor). The pre-tokeniser is Llama 3's regular-expression split
  (:data:`LLAMA3_SPLIT_PATTERN`) followed by a byte-level mapping without its own regex, and the BPE model
  looks a whole word up in the vocabulary before merging (``ignore_merges: true``; see
  github.com/ggml-org/llama.cpp pull 7193). ``tokenizer_config.json``: ``model_max_length`` 131,072, no
  pad token (``special_tokens_map.json`` lists bos and eos only). Its ``clean_up_tokenization_spaces: true``
  is not copied: transformers 5 ignores it for BPE tokenizers (with a warning), so decoding is the same.
* GPT-2: ``openai-community/gpt2-xl`` (``tokenizer.json``, ``tokenizer_config.json``:
  ``{"model_max_length": 1024}``): byte-level pre-tokeniser with GPT-2's own regex, no prefix space,
  ``<|endoftext|>`` as bos, eos and unk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "FILLER_PREFIX",
    "GPT2_ENDOFTEXT",
    "GPT2_REGULAR_SIZE",
    "LLAMA3_BOS",
    "LLAMA3_EOS",
    "LLAMA3_REGULAR_SIZE",
    "LLAMA3_SPECIAL_TOKENS",
    "LLAMA3_SPLIT_PATTERN",
    "check_texts",
    "filler_token",
    "gpt2_tokenizer",
    "llama3_tokenizer",
]

LLAMA3_REGULAR_SIZE = 128_000
LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOS = "<|end_of_text|>"
#: ids 128000 .. 128255, in order
LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = (
    LLAMA3_BOS,
    LLAMA3_EOS,
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(3, 248)),
)
#: the ``Split`` pattern of Llama 3's ``tokenizer.json`` pre-tokeniser
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_MAX_LENGTH = 131_072

GPT2_REGULAR_SIZE = 50_256
GPT2_ENDOFTEXT = "<|endoftext|>"
GPT2_MAX_LENGTH = 1024

FILLER_PREFIX = "\u2400filler"


def filler_token(index: int) -> str:
    """Name of the unreachable filler entry with id ``index``."""
    return f"{FILLER_PREFIX}{index}"


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    """``texts`` as a list, or ValueError/TypeError naming ``what`` unless it is a non-empty sequence of str."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError(f"{what}: texts must be a non-empty sequence of strings, got {texts!r:.80}")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise TypeError(f"{what}: texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
    return list(texts)


def _padded_bpe(texts: list[str], regular_size: int, pre_tokenizer: Any, *, ignore_merges: bool):
    """A ``tokenizers.Tokenizer``: byte-level BPE learned on ``texts`` (pairs seen at least twice), its
    vocabulary padded with filler entries to exactly ``regular_size`` ids; no special tokens yet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    probe = Tokenizer(models.BPE())
    probe.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=regular_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    probe.train_from_iterator(texts, trainer=trainer)
    vocab = probe.get_vocab()
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in _merges(probe)]
    if sorted(vocab.values()) != list(range(len(vocab))) or len(vocab) > regular_size:
        raise RuntimeError(f"BPE training gave {len(vocab)} entries with non-contiguous ids")
    vocab.update({filler_token(i): i for i in range(len(vocab), regular_size)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _merges(tokenizer) -> list:
    return json.loads(tokenizer.to_str())["model"]["merges"]


def _added(token: str):
    from tokenizers import AddedToken

    return AddedToken(token, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)


def llama3_tokenizer(texts: Sequence[str]):
    """A Llama 3.2-convention tokenizer (a ``transformers`` fast tokenizer) trained on ``texts``.

    128,256 tokens: learned byte-level BPE entries, fillers up to id 127,999, then
    :data:`LLAMA3_SPECIAL_TOKENS`. Every encoding starts with ``<|begin_of_text|>`` (128000); no eos is
    added; ``pad_token`` is None. Save it with ``save_pretrained``; ``AutoTokenizer`` loads it back.
    """
    from tokenizers import Regex, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    texts = check_texts(texts, "llama3_tokenizer")
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    backend = _padded_bpe(texts, LLAMA3_REGULAR_SIZE, pre_tokenizer, ignore_merges=True)
    backend.add_special_tokens([_added(token) for token in LLAMA3_SPECIAL_TOKENS])
    bos_id = backend.token_to_id(LLAMA3_BOS)
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS}:0 $A:0",
                pair=f"{LLAMA3_BOS}:0 $A:0 {LLAMA3_BOS}:1 $B:1",
                special_tokens=[(LLAMA3_BOS, bos_id)],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=LLAMA3_BOS,
        eos_token=LLAMA3_EOS,
        model_max_length=LLAMA3_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def gpt2_tokenizer(texts: Sequence[str]):
    """A GPT-2-convention tokenizer (a ``transformers`` fast tokenizer) trained on ``texts``.

    50,257 tokens: learned byte-level BPE entries, fillers up to id 50,255, then ``<|endoftext|>`` (50256)
    as bos, eos and unk. Nothing is added to an encoding; ``pad_token`` is None; ``model_max_length`` 1024.
    """
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    texts = check_texts(texts, "gpt2_tokenizer")
    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    backend = _padded_bpe(texts, GPT2_REGULAR_SIZE, pre_tokenizer, ignore_merges=False)
    backend.add_special_tokens([_added(GPT2_ENDOFTEXT)])
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=GPT2_ENDOFTEXT,
        eos_token=GPT2_ENDOFTEXT,
        unk_token=GPT2_ENDOFTEXT,
        model_max_length=GPT2_MAX_LENGTH,
    )
