"""Join predictions to a dataset split by question id.

The dataset is the ground truth: a joined prediction takes its ``answer``, ``answer_type`` and
``question`` from the record with the same ``qid``. Answers in the file that differ from the
dataset's (compared lower-cased and stripped) are counted in :attr:`JoinResult.answer_mismatches`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..data.record import VQARecord
from .predictions import Prediction, PredictionsError

__all__ = ["JoinResult", "join_with_dataset"]

_SHOW = 5  # ids named in an error message


@dataclass
class JoinResult:
    """Predictions completed from the dataset, and what did not line up.

    ``missing`` are dataset qids without a prediction (kept only with ``missing="skip"``).
    """

    predictions: list[Prediction]
    n_dataset: int
    missing: list[str] = field(default_factory=list)
    answer_mismatches: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "n_dataset": self.n_dataset,
            "n_scored": len(self.predictions),
            "n_missing": len(self.missing),
            "missing_examples": self.missing[:_SHOW],
            "n_answer_mismatches": len(self.answer_mismatches),
            "answer_mismatch_examples": self.answer_mismatches[:_SHOW],
        }


def _where(row: Prediction) -> str:
    return f"{row.qid!r} (line {row.line})" if row.line is not None else repr(row.qid)


def _first(names: Sequence[str]) -> str:
    """The first ``_SHOW`` names joined by commas, then ``" and N more"`` for the rest."""
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def join_with_dataset(
    predictions: Sequence[Prediction],
    records: Sequence[VQARecord],
    *,
    missing: str = "error",
    source: str = "",
    where: str = "the dataset split",
) -> JoinResult:
    """Complete ``predictions`` from ``records`` (see the module docstring).

    Args:
        predictions: rows to score; each ``qid`` must be a dataset qid.
        records: the dataset split they answer.
        missing: ``"error"`` (default) raises when some dataset question has no prediction; ``"skip"``
            scores only the predicted questions and lists the others in :attr:`JoinResult.missing`.
        source: the predictions file's name, used in error messages.
        where: a description of the split (``"slake validate"``), used in error messages.

    Raises:
        PredictionsError: prediction ids not in the dataset (named with their lines), or dataset
            questions without a prediction under ``missing="error"``.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    by_qid = {record.qid: record for record in records}
    unknown = [row for row in predictions if row.qid not in by_qid]
    if unknown:
        raise PredictionsError(
            f"{len(unknown)} prediction id(s) not in {where} ({len(by_qid)} questions): "
            f"{_first([_where(row) for row in unknown])}; "
            "check --dataset/--split/--lang and that 'qid' holds the dataset's question id",
            path=source or None,
        )
    predicted = {row.qid for row in predictions}
    absent = [record.qid for record in records if record.qid not in predicted]
    if absent and missing == "error":
        raise PredictionsError(
            f"{len(absent)} of {len(by_qid)} questions of {where} have no prediction: "
            f"{_first([repr(qid) for qid in absent])}; "
            "pass --missing skip to score only the predicted questions",
            path=source or None,
        )
    joined: list[Prediction] = []
    mismatches: list[str] = []
    for row in predictions:
        record = by_qid[row.qid]
        if row.answer is not None and row.answer.strip().lower() != record.answer.strip().lower():
            mismatches.append(row.qid)
        joined.append(
            replace(row, answer=record.answer, answer_type=record.answer_type, question=record.question)
        )
    return JoinResult(predictions=joined, n_dataset=len(by_qid), missing=absent, answer_mismatches=mismatches)
