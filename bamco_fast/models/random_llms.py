"""Llama 3.2 1B / 3B and GPT-2 XL with seeded random weights, saved as ordinary Hugging Face folders.

:func:`build_random_llm` writes ``config.json``, ``generation_config.json``, safetensors shards
of at most 500 MB (a larger single tensor, such as a Llama embedding, gets a shard of its own) with their
index and a tokenizer trained on the given texts
(:mod:`bamco_fast.models.random_tokenizers`). ``AutoModelForCausalLM.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load it like the real model: same classes, shapes, special
token ids and vocabulary size; only the weights (random) and the learned BPE merges differ.

Architectures (:data:`PUBLISHED_CONFIGS`, every field of the published ``config.json`` except the
bookkeeping ones: ``architectures``, ``torch_dtype``, ``transformers_version``, ``_name_or_path``):

============  =========  ======  =====  ========  ====  =======  ============  ===========
name          hidden     layers  heads  KV heads  head  MLP      vocab         parameters
============  =========  ======  =====  ========  ====  =======  ============  ===========
llama-3.2-1b  2048       16      32     8         64    8192     128,256       1,235.8 M
llama-3.2-3b  3072       28      24     8         128   8192     128,256       3,212.7 M
gpt2-xl       1600       48      25     25        64    6400     50,257        1,557.6 M
============  =========  ======  =====  ========  ====  =======  ============  ===========

Llama 3.2: SiLU gated MLP, RMSNorm eps 1e-5, tied input/output embeddings, no biases, rope_theta 500,000
with ``rope_scaling = {rope_type: llama3, factor: 32, low_freq_factor: 1, high_freq_factor: 4,
original_max_position_embeddings: 8192}``, ``max_position_embeddings`` 131,072, bos 128000, eos 128001,
``initializer_range`` 0.02, ``pretraining_tp`` 1, ``use_cache`` true. GPT-2 XL: learned positions
(``n_positions`` = ``n_ctx`` = 1024), ``gelu_new``, LayerNorm eps 1e-5, Conv1D projections with biases
(``c_attn``, ``c_proj``, ``c_fc``), tied embeddings, dropouts 0.1 (``attn_pdrop``, ``embd_pdrop``,
``resid_pdrop``), bos = eos = 50256, ``initializer_range`` 0.02, and the published ``summary_*``,
``output_past`` and ``task_specific_params`` fields.

Sources (hub repository, file): ``meta-llama/Llama-3.2-1B`` ``config.json`` (revision 4e20de36...,
identical field by field in ``unsloth/Llama-3.2-1B`` and ``amd/Llama-3.2-1B-FP8-KV``);
``meta-llama/Llama-3.2-3B`` ``config.json`` (identical in ``mlx-community/Llama-3.2-3B-bf16`` and
``unsloth/Llama-3.2-3B-bnb-4bit``); ``openai-community/gpt2-xl`` ``config.json`` (commit cefd64e).
transformers 5 stores ``rope_theta`` and ``rope_scaling`` together as ``rope_parameters``.

``width="tiny"`` keeps the family, every non-size field, the tokenizer and the full vocabulary (so the
embedding has 128,256 / 50,257 rows) but shrinks the trunk for tests and CI (:data:`TINY_SIZES`):
Llama hidden 64, 2 layers, 4 heads of 16 with 2 KV heads (grouped-query attention), MLP 256; GPT-2
``n_embd`` 64, 2 layers, 4 heads. They build in a few seconds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ._folders import staged_folder
from .random_tokenizers import check_texts, gpt2_tokenizer, llama3_tokenizer

__all__ = [
    "DTYPES",
    "LLM_NAMES",
    "PUBLISHED_CONFIGS",
    "TINY_SIZES",
    "WIDTHS",
    "build_random_llm",
    "llm_config",
]

WIDTHS = ("full", "tiny")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SHARD_SIZE = "500MB"  # bounds the extra memory of writing: one shard is copied at a time

_LLAMA_3_2_COMMON: dict[str, Any] = {
    "model_type": "llama",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "use_cache": True,
    "vocab_size": 128256,
}

#: the published ``config.json`` fields of each model (see the module docstring for the sources)
PUBLISHED_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {
        **_LLAMA_3_2_COMMON,
        "head_dim": 64,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
    },
    "llama-3.2-3b": {
        **_LLAMA_3_2_COMMON,
        "head_dim": 128,
        "hidden_size": 3072,
        "num_attention_heads": 24,
        "num_hidden_layers": 28,
    },
    "gpt2-xl": {
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "embd_pdrop": 0.1,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "n_ctx": 1024,
        "n_embd": 1600,
        "n_head": 25,
        "n_layer": 48,
        "n_positions": 1024,
        "output_past": True,
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": 50257,
    },
}
LLM_NAMES = tuple(PUBLISHED_CONFIGS)

_TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
#: the fields ``width="tiny"`` changes
TINY_SIZES: dict[str, dict[str, int]] = {
    "llama-3.2-1b": _TINY_LLAMA,
    "llama-3.2-3b": _TINY_LLAMA,
    "gpt2-xl": {"n_embd": 64, "n_layer": 2, "n_head": 4},
}


def _check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{what}: expected one of {list(choices)}, got {value!r}")
    return str(value)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"bfloat16"`` (or the torch dtype itself) -> the torch dtype; ValueError otherwise."""
    for name, value in DTYPES.items():
        if dtype in (name, value):
            return value
    raise ValueError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")


def llm_config(name: str, width: str = "full"):
    """The ``transformers`` config of ``name`` (``LlamaConfig`` or ``GPT2Config``) at ``width``."""
    from transformers import GPT2Config, LlamaConfig

    _check_choice("name", name, LLM_NAMES)
    _check_choice("width", width, WIDTHS)
    fields = copy.deepcopy(PUBLISHED_CONFIGS[name])
    if width == "tiny":
        fields.update(TINY_SIZES[name])
    config_cls = LlamaConfig if fields.pop("model_type") == "llama" else GPT2Config
    return config_cls(**fields)


def build_random_llm(
    name: str,
    folder: Path | str,
    texts: Sequence[str],
    *,
    width: str = "full",
    dtype: str | torch.dtype = "float32",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``name`` with random weights and a tokenizer trained on ``texts`` to ``folder``; return it.

    Args:
        name: ``"llama-3.2-1b"``, ``"llama-3.2-3b"`` or ``"gpt2-xl"``.
        folder: output folder, written atomically (complete or absent). An existing non-empty folder is
            an error unless ``overwrite``.
        texts: non-empty sequence of strings the byte-level BPE merges are learned from.
        width: ``"full"`` (the published sizes) or ``"tiny"`` (:data:`TINY_SIZES`).
        dtype: ``"float32"`` or ``"bfloat16"``: the weights are created and saved in it. Peak memory is
            the weights plus the shard being written plus the libraries: measured peak RSS 6.7 GB for
            Llama 3.2 1B in float32 (4.9 GB of weights), 7.2 GB for GPT-2 XL in float32 (6.2 GB), 7.9 GB
            for Llama 3.2 3B in bfloat16 (6.4 GB).
        seed: seeds the weights (the global RNG is left untouched). Same arguments -> same files.
        overwrite: replace an existing non-empty ``folder``.

    Returns:
        ``folder`` as an absolute path.
    """
    from transformers import AutoModelForCausalLM

    _check_choice("name", name, LLM_NAMES)
    torch_dtype = resolve_dtype(dtype)
    config = llm_config(name, width)
    texts = check_texts(texts, "build_random_llm")
    tokenizer = (llama3_tokenizer if config.model_type == "llama" else gpt2_tokenizer)(texts)
    if len(tokenizer) != config.vocab_size:
        raise RuntimeError(
            f"{name}: tokenizer has {len(tokenizer)} tokens, the model {config.vocab_size} rows"
        )
    folder = Path(folder).absolute()
    with staged_folder(folder, overwrite=overwrite, what="build_random_llm") as staging:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        model.eval()
        model.save_pretrained(staging, max_shard_size=SHARD_SIZE)
        del model
        tokenizer.save_pretrained(staging)
    return folder
