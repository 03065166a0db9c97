"""BERTScore F1 from a LOCAL model folder; never downloads.

BERTScore (Zhang et al., 2020) without idf weighting and without baseline rescaling, as the published
evaluation computes it: for a candidate ``c`` and reference ``r``, take the hidden states of layer
``L`` for their tokens (special tokens such as ``[CLS]``/``[SEP]`` removed), L2-normalise them
(``x_i``: candidate tokens, ``y_j``: reference tokens, shape ``(tokens, hidden)``, float32), then

.. math::  P = \\frac{1}{|c|} \\sum_i \\max_j x_i^\\top y_j, \\quad
           R = \\frac{1}{|r|} \\sum_j \\max_i x_i^\\top y_j, \\quad  F = \\frac{2PR}{P + R}

An empty candidate or reference scores 0. The published code used ``roberta-large`` (layer 17); for
a folder whose name is a model known to BERTScore the same layer is taken (:data:`DEFAULT_LAYERS`),
otherwise the last layer unless ``num_layers`` says otherwise. The model is loaded with
``transformers`` ``from_pretrained(path, local_files_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_LAYERS", "BertScoreUnavailable", "bertscore_f1", "check_model_folder"]

# Layers BERTScore's authors chose for common models (their published defaults).
DEFAULT_LAYERS: dict[str, int] = {
    "roberta-large": 17,
    "roberta-base": 10,
    "bert-base-uncased": 9,
    "bert-large-uncased": 18,
    "microsoft/deberta-xlarge-mnli": 40,
    "deberta-xlarge-mnli": 40,
}


class BertScoreUnavailable(ValueError):
    """BERTScore cannot be computed: no local model folder, or it cannot be loaded."""


def check_model_folder(model_path: str | Path) -> Path:
    """Return ``model_path`` as a ``Path`` if it looks like a local model folder, else raise (cheap, no import)."""
    path = Path(model_path)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise BertScoreUnavailable(
            f"BERTScore needs a local Hugging Face model folder (with config.json and tokenizer files); got "
            f"{str(model_path)!r}, which is not one. Nothing is downloaded: fetch a model once (the published "
            "evaluation used roberta-large) and pass its folder with --bertscore-model."
        )
    return path


def _load(model_path: str | Path):
    path = check_model_folder(model_path)
    try:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise BertScoreUnavailable(f"cannot load the BERTScore model from {str(path)!r}: {exc}") from exc
    return path, tokenizer, model.eval()


def _embed(texts: list[str], tokenizer, model, layer: int, batch_size: int, device):
    import torch

    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = tokenizer(
            chunk, padding=True, truncation=True, return_tensors="pt", return_special_tokens_mask=True
        )
        special = enc.pop("special_tokens_mask").bool()
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer].float()
        hidden = torch.nn.functional.normalize(hidden, dim=-1).cpu()
        keep = enc["attention_mask"].cpu().bool() & ~special
        out.extend(hidden[i][keep[i]] for i in range(len(chunk)))
    return out


def bertscore_f1(
    predictions: Sequence[str],
    answers: Sequence[str],
    model_path: str | Path,
    *,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> tuple[list[float], int]:
    """BERTScore F1 of each prediction against its answer; returns ``(scores, layer used)``.

    Args:
        predictions, answers: texts, scored after stripping and lower-casing (as published).
        model_path: local model folder; a missing folder raises :class:`BertScoreUnavailable`.
        num_layers: hidden-state layer ``L`` (``1``-based, ``0`` = embeddings); default see module docs.
        batch_size: texts per forward pass.
        device: torch device (default CPU).
    """
    if len(predictions) != len(answers):
        raise ValueError(
            f"predictions and answers must have the same length, got {len(predictions)} and {len(answers)}"
        )
    path, tokenizer, model = _load(model_path)
    total = int(getattr(model.config, "num_hidden_layers", 0))
    layer = num_layers if num_layers is not None else DEFAULT_LAYERS.get(path.name, total)
    if not 0 <= layer <= total:
        raise BertScoreUnavailable(f"num_layers must be in [0, {total}] for {str(path)!r}, got {layer}")
    model.to(device or "cpu")
    from .protocols import published_text

    cands = _embed(
        [published_text(p) for p in predictions], tokenizer, model, layer, batch_size, device or "cpu"
    )
    refs = _embed([published_text(a) for a in answers], tokenizer, model, layer, batch_size, device or "cpu")
    scores = []
    for x, y in zip(cands, refs):
        if x.shape[0] == 0 or y.shape[0] == 0:
            scores.append(0.0)
            continue
        sim = x @ y.T
        p = float(sim.max(dim=1).values.mean())
        r = float(sim.max(dim=0).values.mean())
        scores.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return scores, layer
