"""No-model baselines: what a scorer gives for answers that never look at the image.

* ``majority``: every question gets the most frequent training answer of its answer type (the
  dataset's ``OPEN``/``CLOSED`` label; for copies whose label is derived from the answer, such as
  Hugging Face VQA-RAD, the label itself tells whether the answer is yes/no).
* ``question_prior``: every question gets the most frequent training answer given to the same question
  text (compared with :func:`bamco_fast.data.normalize_question`); unseen questions fall back to
  ``majority``.
* ``empty``: the empty answer for every question. Wrong under every protocol except the published
  containment, which counts every empty open answer correct; it shows that protocol's floor.

Answers are counted after normalisation (:func:`~bamco_fast.metrics.normalize.normalize_answer`); the
prediction is the most frequent original spelling of the winning answer. Ties go to the answer that
sorts first, so baselines are deterministic.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from ..data.record import VQARecord, normalize_question
from .normalize import DEFAULT_STEPS, normalize_answer
from .predictions import Prediction
from .report import ScoreReport
from .scoring import score

__all__ = ["BASELINES", "baseline_predictions", "score_baselines"]

BASELINES: tuple[str, ...] = ("majority", "question_prior", "empty")


class _AnswerCounts:
    """Counts of normalised answers, remembering the most frequent spelling of each."""

    def __init__(self, steps: Sequence[str]) -> None:
        self.steps = steps
        self.counts: Counter[str] = Counter()
        self.spellings: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, answer: str) -> None:
        key = normalize_answer(answer, self.steps)
        self.counts[key] += 1
        self.spellings[key][answer.strip()] += 1

    def best(self) -> str | None:
        if not self.counts:
            return None
        key = min(self.counts, key=lambda k: (-self.counts[k], k))
        spellings = self.spellings[key]
        return min(spellings, key=lambda s: (-spellings[s], s))


def _row(record: VQARecord, prediction: str, source: str) -> Prediction:
    return Prediction(
        qid=record.qid,
        prediction=prediction,
        answer=record.answer,
        answer_type=record.answer_type,
        question=record.question,
        extra={"baseline_source": source},
    )


def baseline_predictions(
    train: Sequence[VQARecord], evaluate: Sequence[VQARecord], *, steps: Sequence[str] = DEFAULT_STEPS
) -> dict[str, list[Prediction]]:
    """Predictions of each baseline (:data:`BASELINES`) for ``evaluate``, learnt from ``train``.

    Each prediction's ``extra["baseline_source"]`` says where its answer came from (``"type"``,
    ``"overall"``, ``"question"`` or ``"empty"``).
    """
    if not train:
        raise ValueError("baselines need a non-empty training split")
    overall = _AnswerCounts(steps)
    by_type: dict[str, _AnswerCounts] = defaultdict(lambda: _AnswerCounts(steps))
    by_question: dict[str, _AnswerCounts] = defaultdict(lambda: _AnswerCounts(steps))
    for record in train:
        overall.add(record.answer)
        by_type[record.answer_type].add(record.answer)
        by_question[normalize_question(record.question)].add(record.answer)

    def majority(record: VQARecord) -> tuple[str, str]:
        counts = by_type.get(record.answer_type)
        if counts is not None and counts.counts:
            return counts.best() or "", "type"
        return overall.best() or "", "overall"

    out: dict[str, list[Prediction]] = {name: [] for name in BASELINES}
    for record in evaluate:
        answer, source = majority(record)
        out["majority"].append(_row(record, answer, source))
        prior = by_question.get(normalize_question(record.question))
        if prior is not None and prior.counts:
            out["question_prior"].append(_row(record, prior.best() or "", "question"))
        else:
            out["question_prior"].append(_row(record, answer, source))
        out["empty"].append(_row(record, "", "empty"))
    return out


def score_baselines(
    train: Sequence[VQARecord],
    evaluate: Sequence[VQARecord],
    *,
    qids: set[str] | None = None,
    **score_kwargs,
) -> dict[str, ScoreReport]:
    """Score every baseline on ``evaluate`` (restricted to ``qids`` when given) with :func:`score`.

    ``score_kwargs`` are passed to :func:`score` (closed rule, seed, n_boot, normalisation, ...); each
    report's ``info["question_coverage"]`` gives how many questions ``question_prior`` had seen in train.
    """
    steps = score_kwargs.get("normalization")
    from .normalize import parse_steps

    rows = baseline_predictions(train, evaluate, steps=parse_steps(steps))
    reports = {}
    for name, predictions in rows.items():
        if qids is not None:
            predictions = [p for p in predictions if p.qid in qids]
        report = score(predictions, **score_kwargs)
        seen = sum(1 for p in predictions if p.extra["baseline_source"] == "question")
        report.info["baseline"] = {"name": name, "n_train": len(train), "question_seen_in_train": seen}
        reports[name] = report
    return reports
