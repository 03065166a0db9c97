"""Prompts of the VQA model: placeholder tokens in the LLM's tokenizer, left-padded batches, answer labels.

Prompt (token ids, left-padded to the longest row of the batch)::

    [bos?] <im_patch> x N_img  <kg_token> x N_kg  <ic_token>  " question"  (" answer" eos  while training)

A tokenizer lacking ``<im_patch>``, ``<kg_token>``, ``<ic_token>`` gets them added as special tokens, and
the LLM's embedding matrices are resized with the new rows set to the mean of the old rows
(deterministic, so a base model prepared again at load time is identical; the rows never reach the
model as inputs since placeholders are overwritten). A tokenizer without a pad token (Llama 3, GPT-2)
pads with its eos token (padding is masked out). The bos token is put in front only when the tokenizer
itself adds one (Llama 3 does, GPT-2 does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PLACEHOLDERS", "PromptTokens", "encode_batch", "prepare_tokenizer"]

#: Placeholder tokens, in prompt order: image patches, knowledge, intra-class.
PLACEHOLDERS = ("<im_patch>", "<kg_token>", "<ic_token>")


@dataclass(frozen=True)
class PromptTokens:
    """Token ids of the placeholders (by name) and the bos ids a prompt starts with (``[]`` or ``[bos]``)."""

    token_ids: dict[str, int]
    bos_ids: list[int]


def prepare_tokenizer(tokenizer, llm: nn.Module) -> PromptTokens:
    """Add the placeholders to ``tokenizer`` (and rows to ``llm``'s embeddings), set left padding.

    Raises:
        ValueError: the tokenizer has more tokens than the embedding has rows (another model's
            tokenizer), has no eos token, or splits a placeholder.
    """
    from .vqa_io import resize_with_mean_rows

    vocab = tokenizer.get_vocab()
    missing = [n for n in PLACEHOLDERS if n not in vocab]
    rows = llm.get_input_embeddings().weight.shape[0]
    own = len(tokenizer) - (len(PLACEHOLDERS) - len(missing))
    if own > rows:
        raise ValueError(
            f"tokenizer: {own:,} tokens but the LLM's embedding has {rows:,} rows: the tokenizer does not "
            "belong to this model"
        )
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer: expected an eos token (answers end with it), found none")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    token_ids = {n: int(tokenizer.convert_tokens_to_ids(n)) for n in PLACEHOLDERS}
    for name, index in token_ids.items():
        if tokenizer.convert_ids_to_tokens(index) != name:
            raise ValueError(f"tokenizer: {name!r} is not a single token after adding it")
    if len(tokenizer) > rows:
        resize_with_mean_rows(llm, len(tokenizer))
    bos = tokenizer.bos_token_id
    probe = tokenizer("a")["input_ids"]
    return PromptTokens(token_ids, [bos] if bos is not None and probe[:1] == [bos] else [])


def _check_texts(questions: Sequence[str], answers: Sequence[str] | None) -> None:
    if isinstance(questions, str):
        raise TypeError("questions: expected a list of strings, got a single string")
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"questions[{i}]: expected a non-empty question, got {q!r}")
    if answers is not None and len(answers) != len(questions):
        raise ValueError(f"answers: expected {len(questions)} answers, got {len(answers)}")


def encode_batch(
    tokenizer,
    prefix: Sequence[int],
    questions: Sequence[str],
    answers: Sequence[str] | None = None,
    *,
    max_length: int,
) -> dict:
    """Tokenise prompts (and answers) into left-padded tensors.

    Returns ``input_ids``, ``attention_mask`` (B, L) int64, ``truncated`` (indices of the questions cut to
    fit) and, with answers, ``labels`` (B, L): -100 everywhere except the answer tokens and the eos that
    follows them. A question longer than ``max_length`` allows is cut at its end (then the answer,
    keeping its eos).
    """
    _check_texts(questions, answers)
    prefix = list(prefix)
    budget = max_length - len(prefix)
    if budget < 2:
        raise ValueError(f"max_length: {max_length} leaves no room after the {len(prefix)} prefix tokens")
    eos = tokenizer.eos_token_id
    q_ids = tokenizer([" " + q.strip() for q in questions], add_special_tokens=False)["input_ids"]
    a_ids = (
        tokenizer([" " + str(a).strip() for a in answers], add_special_tokens=False)["input_ids"]
        if answers is not None
        else [[] for _ in questions]
    )
    rows, label_rows, truncated = [], [], []
    for i, (q, a) in enumerate(zip(q_ids, a_ids)):
        a = [*a, eos] if answers is not None else []
        if len(q) > max(1, budget - len(a)):
            truncated.append(i)
        q = q[: max(1, budget - len(a))]
        a = a[: budget - len(q)]
        if answers is not None and a[-1] != eos:
            a[-1] = eos
        rows.append(prefix + q + a)
        label_rows.append([-100] * (len(prefix) + len(q)) + a)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    out = {
        "input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long),
        "attention_mask": torch.tensor(
            [[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long
        ),
        "truncated": truncated,
    }
    if answers is not None:
        out["labels"] = torch.tensor([[-100] * (width - len(r)) + r for r in label_rows], dtype=torch.long)
    return out
