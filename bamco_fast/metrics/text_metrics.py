"""Per-answer text similarity for open questions: BLEU-1 (sacrebleu) and ROUGE-1 F1 (rouge-score).

Both follow the published evaluation: texts are stripped and lower-cased first, each answer is scored
on its own, and the protocol's number is the mean over open questions.

* BLEU-1: ``sacrebleu`` sentence BLEU with ``max_ngram_order=1``, the ``13a`` tokenizer and no
  smoothing: ``BP * p1`` with clipped unigram precision ``p1`` and brevity penalty
  ``BP = min(1, exp(1 - len(ref) / len(hyp)))`` (``0`` for an empty prediction).
* ROUGE-1: ``rouge_score`` F-measure of unigram overlap, no stemming. Its tokenizer keeps only
  ``[a-z0-9]`` runs, so non-Latin text (Slake's Chinese questions) scores 0; use ``lang="en"``.

sacrebleu and rouge-score are imported inside the functions (``import bamco_fast`` stays light).
"""

from __future__ import annotations

from collections.abc import Sequence

from .protocols import published_text

__all__ = ["bleu1_scores", "rouge1_scores"]


def _check(predictions: Sequence[str], answers: Sequence[str]) -> None:
    if len(predictions) != len(answers):
        raise ValueError(
            f"predictions and answers must have the same length, got {len(predictions)} and {len(answers)}"
        )


def bleu1_scores(predictions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """BLEU-1 in ``[0, 1]`` of each prediction against its one answer (see the module docstring)."""
    _check(predictions, answers)
    from sacrebleu.metrics import BLEU

    bleu = BLEU(max_ngram_order=1, smooth_method="none", tokenize="13a", effective_order=True)
    return [
        bleu.sentence_score(published_text(p), [published_text(a)]).score / 100.0
        for p, a in zip(predictions, answers)
    ]


def rouge1_scores(predictions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """ROUGE-1 F1 in ``[0, 1]`` of each prediction against its one answer (see the module docstring)."""
    _check(predictions, answers)
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1"], use_stemmer=False)
    return [
        scorer.score(published_text(a), published_text(p))["rouge1"].fmeasure
        for p, a in zip(predictions, answers)
    ]
