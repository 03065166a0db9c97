"""Where a model comes from (a local folder or a Hugging Face hub name), checked before anything loads.

Loading a hub name that is neither cached nor reachable makes the hub client retry for about a minute
before failing with a network traceback; a folder that holds another kind of model fails deep inside
``from_pretrained``. :func:`locate` answers at once instead, with one line naming the config key, what
was expected and what was found, and how to point at a local folder:

* a local folder must exist, be a folder and hold the marker file of its kind (``config.json`` for a
  language model, ``open_clip_config.json`` for open_clip towers);
* a hub name (``org/name``) is used from the local cache when its marker file is there; otherwise it is
  an error when ``HF_HUB_OFFLINE`` is set or the hub's host cannot be reached within a few seconds.

:func:`check_causal_lm` then reads the folder's ``config.json`` and tokenizer: the architecture must be a
causal LM, and the tokenizer must fit in the model's embedding.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["CausalLMInfo", "ModelSourceError", "check_causal_lm", "hub_offline", "locate"]

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
#: Tokens a VQA model adds to its LLM's tokenizer; a saved run's tokenizer holds them.
PLACEHOLDER_TOKENS = ("<im_patch>", "<kg_token>", "<ic_token>")


class ModelSourceError(ValueError):
    """A model location cannot be used; the message names the config key, the expected and the found."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    port = urlparse(endpoint).port or (443 if endpoint.startswith("https") else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def locate(name: str, *, key: str, marker: str) -> Path | None:
    """The local folder holding ``name``'s ``marker`` file, or ``None`` for a hub name to download.

    Args:
        name: a local folder or a hub name ``org/name``.
        key: the config key or argument that named it (for messages), e.g. ``"model.llm"``.
        marker: the file that folder must hold, e.g. ``"config.json"``.

    Raises:
        ModelSourceError: a missing or wrong folder; a hub name that is not cached while offline or
            while the hub cannot be reached.
    """
    name = str(name).strip()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(
                f"{key}: expected a model folder or a hub name, got {name!r}, which is a file"
            )
        if not (path / marker).is_file():
            found = sorted(p.name for p in path.iterdir())[:6]
            raise ModelSourceError(
                f"{key}: expected a folder holding {marker}, got {name!r} holding {found or 'nothing'}"
            )
        return path
    if not _HUB_NAME.match(name):
        raise ModelSourceError(
            f"{key}: expected a local model folder or a hub name like org/name, got {name!r}, which does not exist"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, marker)
    if isinstance(cached, str):
        return Path(cached).parent
    how = f"download it once where there is a network, or point at a local copy: {key}=/path/to/{name.split('/')[-1]}"
    if hub_offline():
        raise ModelSourceError(
            f"{key}: {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {how}"
        )
    if not _hub_reachable():
        raise ModelSourceError(
            f"{key}: {name!r} is not in the local Hugging Face cache and the hub cannot be reached; {how}"
        )
    return None


@dataclass(frozen=True)
class CausalLMInfo:
    """What :func:`check_causal_lm` found: the folder (``None`` = to be downloaded), architecture, sizes."""

    folder: Path | None
    architecture: str
    vocab_size: int
    tokenizer_size: int


def _architecture(config: dict, where: str, key: str) -> str:
    archs = [str(a) for a in config.get("architectures") or []]
    if archs:
        causal = [a for a in archs if a.endswith(_CAUSAL_SUFFIXES)]
        if not causal:
            raise ModelSourceError(
                f"{key}: {where} holds a {', '.join(archs)}, not a causal language model "
                "(expected e.g. LlamaForCausalLM or GPT2LMHeadModel)"
            )
        return causal[0]
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = str(config.get("model_type", ""))
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelSourceError(
            f"{key}: {where} holds a model of type {model_type or '(none)'!r}, which has no causal LM head"
        )
    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]


def check_causal_lm(
    name: str, *, key: str = "model.llm", tokenizer_dir: str | Path | None = None
) -> CausalLMInfo:
    """Check that ``name`` is a causal LM whose tokenizer fits its embedding, before loading its weights.

    Args:
        name: local folder or hub name (see :func:`locate`).
        key: config key for messages.
        tokenizer_dir: the tokenizer to check instead of the model's own (a saved run's; the placeholder
            tokens a VQA model adds are not counted).

    Raises:
        ModelSourceError: not found, not a causal LM, no tokenizer, or a tokenizer with more tokens than
            the model's embedding has rows.
    """
    folder = locate(name, key=key, marker="config.json")
    if folder is None:  # to be downloaded: nothing local to check yet
        return CausalLMInfo(None, "", 0, 0)
    where = str(name) if Path(str(name)).exists() else f"{name} ({folder})"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSourceError(f"{key}: cannot read {folder / 'config.json'}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"{key}: {folder / 'config.json'} is not a JSON object")
    arch = _architecture(config, where, key)
    vocab = int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size") or 0)
    size = _tokenizer_size(Path(tokenizer_dir) if tokenizer_dir else folder, key)
    if vocab and size > vocab:
        raise ModelSourceError(
            f"{key}: the tokenizer of {where} has {size:,} tokens but the model's embedding has {vocab:,} rows: "
            "the tokenizer does not belong to this model"
        )
    return CausalLMInfo(folder, arch, vocab, size)


def _tokenizer_size(folder: Path, key: str) -> int:
    from transformers import AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise ModelSourceError(f"{key}: no usable tokenizer in {folder}: {message}") from None
    vocab = tok.get_vocab()
    return len(tok) - sum(1 for t in PLACEHOLDER_TOKENS if t in vocab)
