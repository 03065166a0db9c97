"""Answer scoring for medical VQA: every published protocol, side by side, from one predictions file.

Entry points: :func:`read_predictions` / :func:`write_predictions` (JSONL), :func:`join_with_dataset`,
:func:`score` -> :class:`ScoreReport`, :func:`score_baselines`, :func:`aggregate_runs`;
command line: ``python -m bamco_fast.evaluate score PREDICTIONS.jsonl``. Protocols and their rules:
:mod:`bamco_fast.metrics.protocols`; normalisation steps: :mod:`bamco_fast.metrics.normalize`.
Only numpy and the standard library are imported here; sacrebleu, rouge-score and transformers are
imported when the metrics that need them run.
"""

from .baselines import BASELINES, baseline_predictions, score_baselines
from .bertscore import BertScoreUnavailable
from .bootstrap import bootstrap_ci, mean_std
from .join import JoinResult, join_with_dataset
from .normalize import DEFAULT_STEPS, STEPS, normalize_answer, parse_steps
from .predictions import Prediction, PredictionsError, read_predictions, write_predictions
from .protocols import (
    CLOSED_RULES,
    CONTAINMENT_QUIRKS,
    bamco_containment,
    exact_match,
    is_closed,
    token_recall,
)
from .report import METRIC_DESCRIPTIONS, MetricResult, ScoreReport, aggregate_runs, format_side_by_side
from .scoring import ScoreOptions, score

__all__ = [
    "BASELINES",
    "CLOSED_RULES",
    "CONTAINMENT_QUIRKS",
    "DEFAULT_STEPS",
    "METRIC_DESCRIPTIONS",
    "STEPS",
    "BertScoreUnavailable",
    "JoinResult",
    "MetricResult",
    "Prediction",
    "PredictionsError",
    "ScoreOptions",
    "ScoreReport",
    "aggregate_runs",
    "bamco_containment",
    "baseline_predictions",
    "bootstrap_ci",
    "exact_match",
    "format_side_by_side",
    "is_closed",
    "join_with_dataset",
    "mean_std",
    "normalize_answer",
    "parse_steps",
    "read_predictions",
    "score",
    "score_baselines",
    "token_recall",
    "write_predictions",
]
