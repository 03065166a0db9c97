"""``score``: every protocol from one list of predictions, with seeded bootstrap intervals.

The question sets:

* closed / open: split by ``closed_rule`` (``"dataset"``: the dataset's ``answer_type``; ``"yesno"``:
  the published rule, closed iff the answer is yes/no);
* ``overall_*``: all questions;
* ``overall_bamco_published`` always uses the published split (yes/no closed, scored by exact
  lower-cased text; everything else by containment), whatever ``closed_rule`` is, so the published
  number can be reproduced from any file.

Each protocol's number is the mean of per-question scores in ``[0, 1]`` over its set, with a 95%
percentile bootstrap interval (``n_boot`` resamples, ``numpy`` generator seeded with ``seed`` plus the
protocol's position, so intervals are reproducible and independent across protocols).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bootstrap import bootstrap_ci
from .normalize import DEFAULT_STEPS, normalize_answer, parse_steps
from .predictions import Prediction, PredictionsError
from .protocols import (
    CLOSED_RULES,
    bamco_containment,
    bamco_published,
    containment_reason,
    exact_match,
    is_closed,
    token_recall,
)
from .report import METRIC_DESCRIPTIONS, MetricResult, ScoreReport

__all__ = ["ScoreOptions", "score"]


@dataclass(frozen=True)
class ScoreOptions:
    """Settings of :func:`score` (see its arguments)."""

    closed_rule: str = "dataset"
    seed: int = 0
    n_boot: int = 1000
    normalization: tuple[str, ...] = DEFAULT_STEPS
    text_metrics: bool = True
    bertscore_model: str | None = None
    bertscore_layers: int | None = None


def _where(row: Prediction) -> str:
    return f"qid {row.qid!r}" + (f" (line {row.line})" if row.line is not None else "")


def _validate(predictions: Sequence[Prediction], closed_rule: str) -> None:
    if closed_rule not in CLOSED_RULES:
        raise ValueError(f"closed_rule must be one of {list(CLOSED_RULES)}, got {closed_rule!r}")
    if not predictions:
        raise PredictionsError("no predictions to score (expected at least one)")
    seen: dict[str, Prediction] = {}
    for row in predictions:
        if row.qid in seen:
            raise PredictionsError(f"duplicate {_where(row)}; first as {_where(seen[row.qid])}")
        seen[row.qid] = row
        if row.answer is None:
            raise PredictionsError(
                f"{_where(row)} has no 'answer': put answers in the file or join the dataset "
                "(--dataset/--root/--split)"
            )
        if closed_rule == "dataset" and row.answer_type is None:
            raise PredictionsError(
                f"{_where(row)} has no 'answer_type', which closed_rule='dataset' needs: put answer types in the "
                "file, join the dataset (--dataset/--root/--split), or use the published rule (--closed-rule yesno)"
            )


def _rule_counts(predictions: Sequence[Prediction]) -> dict:
    yesno = [is_closed(p.answer, None, "yesno") for p in predictions]
    counts: dict = {"yesno": {"closed": sum(yesno), "open": len(yesno) - sum(yesno)}}
    if all(p.answer_type is not None for p in predictions):
        labels = [p.answer_type == "CLOSED" for p in predictions]
        counts["dataset"] = {"closed": sum(labels), "open": len(labels) - sum(labels)}
        counts["closed_by_dataset_not_yesno"] = sum(d and not y for d, y in zip(labels, yesno))
        counts["closed_by_yesno_not_dataset"] = sum(y and not d for d, y in zip(labels, yesno))
    else:
        counts["dataset"] = None
    return counts


def _result(values: Sequence[float], options: ScoreOptions, offset: int) -> MetricResult:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return MetricResult(n=0, score=math.nan)
    low, high = bootstrap_ci(x, n_boot=options.n_boot, seed=options.seed + offset)
    return MetricResult(n=int(x.size), score=float(x.mean()), ci_low=low, ci_high=high)


def _text_values(
    open_rows: Sequence[Prediction], options: ScoreOptions, notes: list[str]
) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    preds = [p.prediction for p in open_rows]
    answers = [p.answer for p in open_rows]
    if options.text_metrics:
        from .text_metrics import bleu1_scores, rouge1_scores

        for name, fn, package in (
            ("open_bleu1", bleu1_scores, "sacrebleu"),
            ("open_rouge1", rouge1_scores, "rouge-score"),
        ):
            try:
                values[name] = fn(preds, answers)
            except ImportError:
                notes.append(
                    f"{name} not computed: the {package} package is not installed (pip install {package})"
                )
    if options.bertscore_model is None:
        notes.append(
            "open_bertscore not computed: no local model given (--bertscore-model PATH); nothing is downloaded"
        )
    else:
        from .bertscore import bertscore_f1

        values["open_bertscore"], layer = bertscore_f1(
            preds, answers, options.bertscore_model, num_layers=options.bertscore_layers
        )
        notes.append(f"open_bertscore: model {options.bertscore_model}, layer {layer}, no idf, no rescaling")
    return values


def score(
    predictions: Sequence[Prediction],
    *,
    closed_rule: str = "dataset",
    seed: int = 0,
    n_boot: int = 1000,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    normalization: str | Sequence[str] | None = None,
    text_metrics: bool = True,
) -> ScoreReport:
    """Score ``predictions`` under every protocol (names in :data:`~bamco_fast.metrics.report.METRIC_DESCRIPTIONS`).

    Args:
        predictions: rows with ``answer`` (and ``answer_type`` for ``closed_rule="dataset"``) filled,
            e.g. from :func:`~bamco_fast.metrics.join.join_with_dataset`; qids must be unique.
        closed_rule: ``"dataset"`` (dataset label, default) or ``"yesno"`` (published rule).
        seed: bootstrap seed. n_boot: bootstrap resamples (``0`` = no intervals).
        bertscore_model: local model folder for ``open_bertscore`` (skipped with a note when ``None``).
        bertscore_layers: BERTScore layer (default: see :mod:`bamco_fast.metrics.bertscore`).
        normalization: steps for exact match and recall (default all, see :mod:`~bamco_fast.metrics.normalize`).
        text_metrics: compute BLEU-1 and ROUGE-1 (needs sacrebleu and rouge-score).

    Raises:
        PredictionsError: empty input, duplicate qids, missing answers or answer types (naming the row).
    """
    steps = parse_steps(normalization)
    options = ScoreOptions(closed_rule, seed, n_boot, steps, text_metrics, bertscore_model, bertscore_layers)
    _validate(predictions, closed_rule)
    closed = [p for p in predictions if is_closed(p.answer, p.answer_type, closed_rule)]
    open_rows = [p for p in predictions if not is_closed(p.answer, p.answer_type, closed_rule)]
    values: dict[str, list[float]] = {
        "closed_exact": [exact_match(p.prediction, p.answer, steps) for p in closed],
        "open_exact": [exact_match(p.prediction, p.answer, steps) for p in open_rows],
        "open_recall": [token_recall(p.prediction, p.answer, steps) for p in open_rows],
        "open_containment_bamco": [bamco_containment(p.prediction, p.answer) for p in open_rows],
        "overall_exact": [exact_match(p.prediction, p.answer, steps) for p in predictions],
        "overall_bamco_published": [bamco_published(p.prediction, p.answer) for p in predictions],
    }
    notes: list[str] = []
    values.update(_text_values(open_rows, options, notes))
    order = list(METRIC_DESCRIPTIONS)
    metrics = {name: _result(values[name], options, order.index(name)) for name in order if name in values}
    reasons = Counter(containment_reason(p.prediction, p.answer, steps) for p in open_rows)
    flags = {
        "empty_predictions": sum(
            1 for p in predictions if not normalize_answer(p.prediction, ("whitespace",))
        ),
        "containment_only": {
            k: reasons.get(k, 0)
            for k in ("empty_prediction", "empty_piece", "piece_in_answer", "answer_in_piece")
        },
    }
    if n_boot:
        notes.append(f"95% intervals: percentile bootstrap over questions, {n_boot} resamples, seed {seed}")
    return ScoreReport(
        metrics=metrics,
        closed_rule=closed_rule,
        normalization=steps,
        n_questions=len(predictions),
        rule_counts=_rule_counts(predictions),
        flags=flags,
        notes=notes,
    )
