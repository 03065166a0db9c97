"""Score reports: per-protocol results, JSON form, printed tables, and mean/std over runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .bootstrap import mean_std

__all__ = [
    "METRIC_DESCRIPTIONS",
    "MetricResult",
    "ScoreReport",
    "aggregate_runs",
    "format_aggregate",
    "format_side_by_side",
]

METRIC_DESCRIPTIONS: dict[str, str] = {
    "closed_exact": "closed questions: exact match of normalised text",
    "open_exact": "open questions: exact match of normalised text",
    "open_recall": "open questions: LLaVA-Med token recall",
    "open_containment_bamco": "open questions: published BaMCo containment (lenient; quirks in the docs)",
    "overall_exact": "all questions: exact match of normalised text",
    "overall_bamco_published": "all questions, published BaMCo rules: yes/no closed, exact; others containment",
    "open_bleu1": "open questions: BLEU-1 per answer (sacrebleu, 13a), averaged",
    "open_rouge1": "open questions: ROUGE-1 F1 per answer (rouge-score, no stemming), averaged",
    "open_bertscore": "open questions: BERTScore F1 per answer (local model), averaged",
}


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass(frozen=True)
class MetricResult:
    """One protocol's headline number: mean ``score`` over ``n`` questions and its bootstrap interval.

    ``score`` is in ``[0, 1]`` (``nan`` when ``n == 0``); ``ci_low``/``ci_high`` bound the 95% percentile
    bootstrap interval (``nan`` without resamples).
    """

    n: int
    score: float
    ci_low: float = math.nan
    ci_high: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "score": _num(self.score),
            "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high),
        }


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100.0 * value:6.2f}"


def _interval(result: MetricResult) -> str:
    if math.isnan(result.ci_low):
        return ""
    return f"[{100.0 * result.ci_low:.2f}, {100.0 * result.ci_high:.2f}]"


@dataclass
class ScoreReport:
    """Every protocol computed from one set of predictions.

    Attributes:
        metrics: protocol name -> :class:`MetricResult`, in the order of :data:`METRIC_DESCRIPTIONS`.
        closed_rule: ``"dataset"`` or ``"yesno"``: how questions were split into closed and open.
        normalization: the normalisation steps used by exact match and recall.
        n_questions: number of scored questions.
        rule_counts: how many questions each closed rule puts on each side, and where they disagree.
        flags: counts that warn about lenient scoring (empty predictions; open questions that only
            containment counts correct, by reason).
        notes: human-readable remarks (metrics skipped and why, the bootstrap settings).
        info: free-form context added by callers (files, dataset join summary).
    """

    metrics: dict[str, MetricResult]
    closed_rule: str
    normalization: tuple[str, ...]
    n_questions: int
    rule_counts: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {name: result.to_json() for name, result in self.metrics.items()},
            "closed_rule": self.closed_rule,
            "normalization": list(self.normalization),
            "n_questions": self.n_questions,
            "rule_counts": self.rule_counts,
            "flags": self.flags,
            "notes": list(self.notes),
            "descriptions": {name: METRIC_DESCRIPTIONS.get(name, "") for name in self.metrics},
            **self.info,
        }

    def header(self) -> str:
        counts = self.rule_counts.get(self.closed_rule) or {}
        return (
            f"{self.n_questions} questions; closed rule: {self.closed_rule} "
            f"({counts.get('closed', '?')} closed, {counts.get('open', '?')} open); "
            f"normalisation: {','.join(self.normalization) or 'none'}"
        )

    def format_table(self) -> str:
        """A plain-text table: protocol, n, score (%), 95% interval (%), then header and flags."""
        lines = [self.header(), f"{'protocol':<26}{'n':>6}  {'score %':>7}  95% CI"]
        for name, result in self.metrics.items():
            lines.append(f"{name:<26}{result.n:>6}  {_pct(result.score):>7}  {_interval(result)}")
        lines.extend(_flag_lines(self.flags))
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _flag_lines(flags: Mapping[str, Any]) -> list[str]:
    out = []
    if flags.get("empty_predictions"):
        out.append(
            f"flag: {flags['empty_predictions']} empty prediction(s): wrong under every protocol except the "
            "published containment, which counts them correct"
        )
    only = flags.get("containment_only") or {}
    total = sum(only.values())
    if total:
        parts = ", ".join(f"{k}: {v}" for k, v in only.items() if v)
        out.append(f"flag: {total} open answer(s) correct only under containment ({parts})")
    return out


def format_side_by_side(columns: Mapping[str, ScoreReport]) -> str:
    """One row per protocol, one score column (%) per report, e.g. a model beside the no-model baselines."""
    names: list[str] = []
    for report in columns.values():
        names.extend(name for name in report.metrics if name not in names)
    width = max(12, *(len(c) + 2 for c in columns))
    lines = [f"{'protocol':<26}{'n':>6}" + "".join(f"{c:>{width}}" for c in columns)]
    for name in names:
        first = next((r.metrics[name] for r in columns.values() if name in r.metrics), None)
        row = f"{name:<26}{first.n if first else 0:>6}"
        for report in columns.values():
            result = report.metrics.get(name)
            row += f"{_pct(result.score) if result else '-':>{width}}"
        lines.append(row)
    return "\n".join(lines)


def aggregate_runs(reports: Sequence[ScoreReport]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation (``ddof=1``) of each protocol's score over runs (e.g. seeds).

    Returns ``{protocol: {"n": n of the first run, "score": mean, "std": std, "n_runs": k, "runs": [...]}}``
    over the protocols present in every run.
    """
    if not reports:
        raise ValueError("aggregate_runs needs at least one report")
    common = [name for name in reports[0].metrics if all(name in r.metrics for r in reports)]
    out: dict[str, dict[str, Any]] = {}
    for name in common:
        scores = [r.metrics[name].score for r in reports]
        mean, std = mean_std(scores)
        out[name] = {
            "n": reports[0].metrics[name].n,
            "score": _num(mean),
            "std": _num(std),
            "n_runs": len(reports),
            "runs": [_num(s) for s in scores],
        }
    return out


def format_aggregate(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """Table of :func:`aggregate_runs`: protocol, n, mean (%), std (percentage points), runs."""
    lines = [f"{'protocol':<26}{'n':>6}  {'mean %':>7}  {'std':>6}  runs"]
    for name, row in summary.items():
        std = row["std"]
        lines.append(
            f"{name:<26}{row['n']:>6}  {_pct(row['score']):>7}  {'-' if std is None else f'{100 * std:6.2f}'}"
            f"  {row['n_runs']}"
        )
    return "\n".join(lines)
