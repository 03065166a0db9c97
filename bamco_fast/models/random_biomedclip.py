"""BiomedCLIP-shaped towers with seeded random weights, built locally (no download).

The folder is an open_clip hub-layout folder, loaded with ``load_towers(f"local-dir:{folder}")`` (the
same path as ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``), written by
:func:`bamco_fast.models.tiny.write_towers_folder`:

* image tower: timm ``vit_base_patch16_224`` (ViT-B/16: width 768, depth 12, 12 heads, CLS pooling),
  then a bias-free Linear 768 -> 512 (``timm_proj: "linear"``), 224-px input;
* text tower: a Hugging Face BERT-base (hidden 768, 12 layers, 12 heads, intermediate 3072, vocabulary
  30,522 as PubMedBERT), CLS of the last hidden state, open_clip's bias-free MLP 768 -> 640 -> 512;
* tokenizer: a lower-casing WordPiece vocabulary trained on ``texts``
  (:func:`bamco_fast.models.tiny.train_wordpiece_vocab`), padded with ``[unusedN]`` entries to 30,522
  tokens, context length 256 (every text is padded to 256 tokens, as BiomedCLIP's is).

195.9 M float32 parameters (86.2 M image tower with its projection, 109.7 M text tower with its
projection, 1 logit scale); the folder is about 0.78 GB, as the published weights file (784 MB). Sources:
``open_clip_config.json`` of the hub repo ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``
(commit 2584124: ``vit_base_patch16_224``, ``timm_pool ""``, ``timm_proj "linear"``, 224 px, text tower
``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract`` with ``hf_proj_type "mlp"``,
``cls_last_hidden_state_pooler``, context 256, ``embed_dim`` 512, OpenAI mean/std) and the BERT text
config of its transformers port ``chuhac/BiomedCLIP-vit-bert-hf`` (``config.json``, ``text_config``:
hidden 768, 12 layers, 12 heads, intermediate 3072, 512 positions, vocabulary 30,522).

``width="tiny"`` keeps the layout, the 224-px input, the 30,522-token vocabulary, context 256 and
embedding 512, with timm's ``test_vit`` (width 64, depth 6) and a BERT of hidden 64, 2 layers, 2 heads.

The weights are random: step times and memory equal the real model's, the features mean nothing. The
towers are written in float32 (open_clip builds its towers in float32 when it loads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["CONTEXT_LENGTH", "EMBED_DIM", "VOCAB_SIZE", "biomedclip_configs", "build_random_biomedclip"]

VOCAB_SIZE = 30522
CONTEXT_LENGTH = 256
EMBED_DIM = 512
_WIDTHS = ("full", "tiny")


def biomedclip_configs(width: str = "full") -> tuple[object, dict]:
    """``(BertConfig, open_clip vision_cfg)`` of the towers at ``width`` (``"full"`` or ``"tiny"``)."""
    import transformers

    if width not in _WIDTHS:
        raise ValueError(f"width: expected one of {list(_WIDTHS)}, got {width!r}")
    if width == "full":  # BERT-base defaults: hidden 768, 12 layers, 12 heads, intermediate 3072
        bert = transformers.BertConfig(vocab_size=VOCAB_SIZE, pad_token_id=0)
        trunk = "vit_base_patch16_224"
    else:
        bert = transformers.BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
            pad_token_id=0,
        )
        trunk = "test_vit"
    vision_cfg = {
        "timm_model_name": trunk,
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 224,
    }
    return bert, vision_cfg


def build_random_biomedclip(
    folder: Path | str,
    texts: Sequence[str],
    *,
    width: str = "full",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write random BiomedCLIP-shaped towers to ``folder`` (atomically) and return it (absolute).

    Args:
        folder: output folder; an existing non-empty one is an error unless ``overwrite``.
        texts: non-empty sequence of strings the WordPiece vocabulary is trained on.
        width: ``"full"`` (BiomedCLIP's sizes) or ``"tiny"``.
        seed: seeds the random weights (the global RNG is left untouched). Same arguments -> same files.
        overwrite: replace an existing non-empty ``folder``.
    """
    import transformers

    from .random_tokenizers import check_texts
    from .tiny import train_wordpiece_vocab, write_towers_folder

    texts = check_texts(texts, "build_random_biomedclip")
    bert_config, vision_cfg = biomedclip_configs(width)
    vocab = train_wordpiece_vocab(texts, VOCAB_SIZE)
    for i in range(VOCAB_SIZE - len(vocab)):
        vocab[f"[unused{i}]"] = len(vocab)
    tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=CONTEXT_LENGTH)
    return write_towers_folder(
        Path(folder),
        bert_config,
        tokenizer,
        vision_cfg,
        embed_dim=EMBED_DIM,
        context_length=CONTEXT_LENGTH,
        seed=seed,
        overwrite=overwrite,
        what="build_random_biomedclip",
    )
