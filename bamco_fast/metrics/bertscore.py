"""BERTScore F1 from a LOCAL model folder, through the ``bert-score`` package; never downloads.

BERTScore (Zhang et al., 2020) without idf weighting and without baseline rescaling, as the published
evaluation computes it: for a candidate ``c`` and reference ``r``, take the hidden states of layer
``L`` for their tokens (special tokens such as ``[CLS]``/``[SEP]`` left out), L2-normalise them
(``x_i``: candidate tokens, ``y_j``: reference tokens), then

.. math::  P = \\frac{1}{|c|} \\sum_i \\max_j x_i^\\top y_j, \\quad
           R = \\frac{1}{|r|} \\sum_j \\max_i x_i^\\top y_j, \\quad  F = \\frac{2PR}{P + R}

:func:`bertscore_f1` strips and lower-cases the texts (as published) and calls ``bert_score.score`` with
the folder as its ``model_type`` and an explicit layer: for a folder named after a model known to
BERTScore its authors' layer (:data:`DEFAULT_LAYERS`; the published code used ``roberta-large``, layer
17), otherwise the last layer unless ``num_layers`` says otherwise. A pair with an empty side scores 0
and is not passed to the package (its encoder of an empty text calls a tokenizer method that
``transformers`` 5 removed).
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


def _layers(path: Path) -> int:
    """Hidden layers of the model in ``path`` (from its ``config.json``)."""
    import json

    try:
        return int(json.loads((path / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers", 0))
    except (OSError, ValueError) as exc:
        raise BertScoreUnavailable(f"cannot read {path / 'config.json'}: {exc}") from None


def _package_f1(
    cands: list[str], refs: list[str], path: Path, layer: int, batch_size: int, device: str
) -> list[float]:
    try:
        import bert_score
    except ImportError:
        raise BertScoreUnavailable("BERTScore needs the bert-score package: pip install bert-score") from None
    kwargs = {"model_type": str(path), "num_layers": layer, "idf": False, "rescale_with_baseline": False}
    try:
        _, _, f1 = bert_score.score(cands, refs, batch_size=batch_size, device=device, **kwargs)
    except OverflowError:
        raise BertScoreUnavailable(
            f"the tokenizer in {str(path)!r} sets no model_max_length (BERTScore truncates texts to it); add it "
            "to its tokenizer_config.json"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise BertScoreUnavailable(
            f"cannot compute BERTScore with the model in {str(path)!r}: {exc}"
        ) from exc
    return [float(v) for v in f1.tolist()]


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
        num_layers: hidden-state layer ``L`` (``1``-based, ``0`` = embeddings); default see the module docstring.
        batch_size: texts per forward pass.
        device: torch device (default CPU).
    """
    if len(predictions) != len(answers):
        raise ValueError(
            f"predictions and answers must have the same length, got {len(predictions)} and {len(answers)}"
        )
    path = check_model_folder(model_path)
    total = _layers(path)
    layer = num_layers if num_layers is not None else DEFAULT_LAYERS.get(path.name, total)
    if not 0 <= layer <= total:
        raise BertScoreUnavailable(f"num_layers must be in [0, {total}] for {str(path)!r}, got {layer}")
    from .protocols import published_text

    cands = [published_text(p) for p in predictions]
    refs = [published_text(a) for a in answers]
    both = [i for i, (c, r) in enumerate(zip(cands, refs)) if c.strip() and r.strip()]
    scores = [0.0] * len(cands)
    if both:
        values = _package_f1(
            [cands[i] for i in both], [refs[i] for i in both], path, layer, batch_size, device or "cpu"
        )
        for i, value in zip(both, values):
            scores[i] = value
    return scores, layer
