"""BiomedCLIP-sized towers with random weights, built locally (no download), for timing at the real shapes.

The folder is an open_clip hub-layout folder loaded with ``load_towers(f"local-dir:{folder}")``, written
the way :func:`bamco_fast.models.tiny.build_tiny_towers` writes its tiny towers, at BiomedCLIP's sizes:

* image tower: timm ``vit_base_patch16_224`` (ViT-B/16: width 768, depth 12, 12 heads, CLS pooling),
  then a bias-free Linear 768 -> 512 (``timm_proj: "linear"``), 224-px input;
* text tower: a Hugging Face BERT-base (hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary
  30,522 as BiomedBERT), CLS of the last hidden state, open_clip's bias-free MLP 768 -> 640 -> 512;
* tokenizer: a lower-casing WordPiece vocabulary trained on ``texts``, padded with ``[unusedN]`` entries
  to 30,522 tokens, context length 256 (every text is padded to 256 tokens, as BiomedCLIP's is).

Weights are random (seeded): step times and memory equal the real model's, the features mean nothing.
The folder is about 0.8 GB (196 M float32 parameters).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

VOCAB_SIZE = 30522
CONTEXT_LENGTH = 256
EMBED_DIM = 512


def default_folder(texts: Sequence[str]) -> Path:
    """``$BAMCO_FAST_BENCH_CACHE/biomedclip-random-<digest of texts>`` (default root
    ``~/.cache/bamco_fast/bench``): one folder per tokenizer training set."""
    root = os.environ.get("BAMCO_FAST_BENCH_CACHE", str(Path.home() / ".cache" / "bamco_fast" / "bench"))
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:12]
    return Path(root) / f"biomedclip-random-{digest}"


def build_random_biomedclip(folder: Path, texts: Sequence[str], *, seed: int = 0) -> Path:
    """Write full-size random BiomedCLIP-shaped towers to ``folder`` (atomically) and return it.

    Args:
        folder: output folder; an existing complete folder (one with ``open_clip_config.json``) is reused
            as it is (:func:`default_folder` names one per ``texts``).
        texts: non-empty sequence of strings the WordPiece vocabulary is trained on.
        seed: seeds the random weights (the global RNG is left untouched).
    """
    folder = Path(folder).absolute()
    if (folder / "open_clip_config.json").is_file():
        return folder
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError(
            f"build_random_biomedclip: texts must be a non-empty sequence of strings, got {texts!r:.80}"
        )
    import transformers

    from bamco_fast.models.tiny import train_wordpiece_vocab, write_towers_folder

    vocab = train_wordpiece_vocab(texts, VOCAB_SIZE)
    for i in range(VOCAB_SIZE - len(vocab)):
        vocab[f"[unused{i}]"] = len(vocab)
    tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=CONTEXT_LENGTH)
    bert_config = transformers.BertConfig(vocab_size=len(vocab), pad_token_id=0)  # BERT-base defaults
    vision_cfg = {
        "timm_model_name": "vit_base_patch16_224",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 224,
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    return write_towers_folder(
        folder,
        bert_config,
        tokenizer,
        vision_cfg,
        embed_dim=EMBED_DIM,
        context_length=CONTEXT_LENGTH,
        seed=seed,
        overwrite=False,
        what="build_random_biomedclip",
    )
