"""Tiny towers in BiomedCLIP's shape, built locally (no download), for tests and demos.

The folder :func:`build_tiny_towers` writes is an open_clip hub-layout folder, the same layout as
``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``:

* image tower: timm ``test_vit`` (patch 16, width 64, depth 6, 2 heads; CLS pooling like ViT-B/16),
  then a bias-free Linear 64 -> ``embed_dim`` (open_clip ``timm_proj: "linear"``);
* text tower: a Hugging Face BERT without pooler (``text_width`` wide, ``text_layers`` deep), CLS token
  of the last hidden state, then open_clip's bias-free MLP projection -> ``embed_dim``;
* tokenizer: a lower-casing WordPiece vocabulary trained on ``texts``, saved as a BERT tokenizer that
  pads/truncates to ``context_length``.

It is loaded with ``load_towers(f"local-dir:{folder}")`` (``open_clip.create_model_from_pretrained`` and
``open_clip.get_tokenizer``), so code tested on it runs the real model's loading path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ._folders import staged_folder
from .towers import OPENAI_MEAN, OPENAI_STD, write_hub_folder

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4; [PAD] = 0 = BERT's pad id
TEXT_CONFIG_DIR = "text_config"


def train_wordpiece_vocab(texts: Sequence[str], vocab_size: int) -> dict[str, int]:
    """A lower-casing WordPiece vocabulary for ``texts``: token -> id, specials first (``[PAD]`` = 0).

    BERT's normaliser and pre-tokeniser split the texts into words; the vocabulary is every character
    seen (as a word start and as a ``##`` continuation, so any word of these characters tokenises), then
    whole words by decreasing frequency (ties alphabetical) up to ``vocab_size`` entries. Unlike the
    ``tokenizers`` WordPiece trainer, whose vocabulary changes between runs on ties, the result is a
    pure function of the texts.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in words for c in word})
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    budget = max(0, vocab_size - len(tokens))
    ranked = sorted((w for w in words if len(w) > 1), key=lambda w: (-words[w], w))
    tokens += ranked[:budget]
    return {token: i for i, token in enumerate(tokens)}


def _bert_tokenizer(vocab: dict[str, int], context_length: int):
    """A fast BERT tokenizer over ``vocab`` (lower-casing, ``[CLS] ... [SEP]``), for transformers 4 and 5."""
    import tempfile

    import transformers
    from packaging.version import Version

    if Version(transformers.__version__).major >= 5:
        return transformers.BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=context_length)
    with tempfile.TemporaryDirectory() as tmp:  # transformers 4 builds it from a vocab file
        path = Path(tmp) / "vocab.txt"
        path.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
        return transformers.BertTokenizerFast(
            vocab_file=str(path), do_lower_case=True, model_max_length=context_length
        )


def _check_tiny_arguments(
    texts: Sequence[str],
    image_size: int,
    *,
    embed_dim: int,
    context_length: int,
    vocab_size: int,
    text_width: int,
    text_layers: int,
    text_heads: int,
    text_init_std: float,
) -> None:
    """Raise ``ValueError`` / ``TypeError`` naming the first argument of :func:`build_tiny_towers` out of range."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError(
            f"build_tiny_towers: texts must be a non-empty sequence of strings, got {texts!r:.80}"
        )
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"build_tiny_towers: texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
    if not isinstance(image_size, int) or image_size < 32 or image_size % 16:
        raise ValueError(
            f"build_tiny_towers: image_size must be a multiple of 16 and >= 32, got {image_size!r}"
        )
    for name, value, low in (
        ("embed_dim", embed_dim, 1),
        ("context_length", context_length, 4),
        ("vocab_size", vocab_size, len(SPECIAL_TOKENS) + 1),
        ("text_width", text_width, 1),
        ("text_layers", text_layers, 1),
        ("text_heads", text_heads, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"build_tiny_towers: {name} must be an int >= {low}, got {value!r}")
    if not isinstance(text_init_std, (int, float)) or not 0 < text_init_std < 10:
        raise ValueError(
            f"build_tiny_towers: text_init_std must be a number in (0, 10), got {text_init_std!r}"
        )
    if text_width % text_heads:
        raise ValueError(
            f"build_tiny_towers: text_width ({text_width}) must be divisible by text_heads ({text_heads})"
        )


def _tiny_vision_cfg(image_size: int) -> dict:
    """open_clip ``vision_cfg`` of the tiny image tower: timm ``test_vit`` (random), CLS pooling, a
    bias-free linear projection, square ``image_size`` inputs."""
    return {
        "timm_model_name": "test_vit",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": image_size,
    }


def build_tiny_towers(
    folder: Path,
    texts: Sequence[str],
    *,
    image_size: int = 224,
    seed: int = 0,
    embed_dim: int = 512,
    context_length: int = 64,
    vocab_size: int = 2000,
    text_width: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    text_init_std: float = 0.25,
    overwrite: bool = False,
) -> Path:
    """Write tiny BiomedCLIP-shaped towers to ``folder`` (open_clip hub layout) and return the folder.

    Args:
        folder: output folder (written atomically: complete or absent). An existing non-empty folder is
            an error unless ``overwrite``.
        texts: non-empty sequence of strings the WordPiece vocabulary is trained on.
        image_size: S, side of the square input images; a multiple of 16, >= 32 (224 as BiomedCLIP).
        seed: seeds the random weights (the global RNG is left untouched). Same arguments -> same files.
        embed_dim: width of the image and text embeddings (512 as BiomedCLIP).
        context_length: token sequence length (BiomedCLIP: 256; 64 here keeps the frozen text features
            of a demo's few thousand strings a matter of seconds on a CPU).
        vocab_size: upper bound on the WordPiece vocabulary size (specials included).
        text_width, text_layers, text_heads: BERT hidden size, layers and attention heads.
        text_init_std: standard deviation of the BERT's random weights. BERT's own default (0.02) makes
            a tiny random BERT's CLS output nearly the same for every string (mean pairwise cosine
            0.99995 over the demo's strings), so a text head trained on it gets almost no signal; 0.25
            gives 0.85, closer to a pretrained tower that tells strings apart.
        overwrite: replace an existing non-empty ``folder``.

    Returns:
        ``folder`` as an absolute path; load with ``load_towers(f"local-dir:{folder}")``.
    """
    _check_tiny_arguments(
        texts,
        image_size,
        embed_dim=embed_dim,
        context_length=context_length,
        vocab_size=vocab_size,
        text_width=text_width,
        text_layers=text_layers,
        text_heads=text_heads,
        text_init_std=text_init_std,
    )

    import transformers

    vocab = train_wordpiece_vocab(texts, vocab_size)
    tokenizer = _bert_tokenizer(vocab, context_length)
    bert_config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=text_width,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        intermediate_size=2 * text_width,
        max_position_embeddings=context_length,
        pad_token_id=0,
        initializer_range=text_init_std,
    )
    return write_towers_folder(
        folder,
        bert_config,
        tokenizer,
        _tiny_vision_cfg(image_size),
        embed_dim=embed_dim,
        context_length=context_length,
        seed=seed,
        overwrite=overwrite,
        what="build_tiny_towers",
    )


def write_towers_folder(
    folder: Path,
    bert_config,
    tokenizer,
    vision_cfg: dict,
    *,
    embed_dim: int,
    context_length: int,
    seed: int,
    overwrite: bool,
    what: str,
) -> Path:
    """Build a randomly initialised BiomedCLIP-shaped open_clip model (timm image tower from
    ``vision_cfg``, Hugging Face BERT from ``bert_config`` with a CLS pooler and MLP projection, OpenAI
    normalisation) and write it with ``tokenizer`` as an open_clip hub-layout folder (atomically).

    ``seed`` seeds the weights without touching the global RNG. Returns ``folder`` (absolute).
    """
    import open_clip
    from open_clip.model import set_model_preprocess_cfg

    image_size = int(vision_cfg["image_size"])
    text_cfg = {
        "hf_model_name": TEXT_CONFIG_DIR,
        "hf_tokenizer_name": TEXT_CONFIG_DIR,
        "hf_proj_type": "mlp",
        "hf_pooler_type": "cls_last_hidden_state_pooler",
        "context_length": context_length,
    }
    model_config = {"embed_dim": embed_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    folder = Path(folder).absolute()
    with staged_folder(folder, overwrite=overwrite, what=what) as staging:
        bert_config.save_pretrained(str(staging / TEXT_CONFIG_DIR))
        build_text_cfg = dict(
            text_cfg, hf_model_name=str(staging / TEXT_CONFIG_DIR), hf_model_pretrained=False
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            clip = open_clip.CustomTextCLIP(
                embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=build_text_cfg
            )
        set_model_preprocess_cfg(
            clip, {"size": image_size, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic"}
        )
        write_hub_folder(staging, folder, clip, tokenizer, model_config)
    return folder
