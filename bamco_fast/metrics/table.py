"""A Markdown table of scores from the reports of several runs (``python -m bamco_fast.evaluate table``).

Each row is one report JSON written by ``python -m bamco_fast.train vqa`` (``report_<split>.json``) or by
``python -m bamco_fast.evaluate score --out``: its ``"metrics"`` map of protocol -> ``{"n", "score"}``.
A report that carries ``"baselines"`` (the no-model baselines scored on the same questions) can add one
row per baseline: once per group of consecutive reports on the same questions (same dataset, split
and number of questions), after the group. Scores are printed in %, one decimal; ``n`` is the number of
questions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_COLUMNS", "TableRow", "format_markdown_table", "read_table_rows", "table_rows"]

DEFAULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("closed_exact", "closed exact"),
    ("open_exact", "open exact"),
    ("open_recall", "open recall (LLaVA-Med)"),
    ("open_containment_bamco", "open containment (BaMCo code)"),
    ("overall_exact", "overall exact"),
    ("overall_bamco_published", "overall, published rules"),
)
BASELINE_LABELS = {
    "majority": "majority answer",
    "question_prior": "train answer of the same question",
    "empty": "empty answer",
}


@dataclass(frozen=True)
class TableRow:
    """One row: a label, the number of questions and protocol -> score in ``[0, 1]``."""

    label: str
    n: int
    scores: dict[str, float]
    questions: tuple = ()  # (dataset, split, n): which questions were scored


def _scores(metrics: object, where: str) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise ValueError(
            f"{where}: expected a 'metrics' object of protocol -> {{n, score}}, got {metrics!r:.60}"
        )
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict) and isinstance(value.get("score"), (int, float)):
            out[name] = float(value["score"])
    return out


def read_table_rows(path: Path | str, label: str, *, baselines: bool = False) -> list[TableRow]:
    """The row of the report at ``path`` (and, with ``baselines``, one row per no-model baseline)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report: file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON report ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "metrics" not in data:
        raise ValueError(f"{path}: expected a scoring report with a 'metrics' object")
    metrics = data["metrics"]
    n = int(metrics.get("overall_exact", {}).get("n", data.get("n_questions", 0)))
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    questions = (data.get("dataset", info.get("dataset")), data.get("split", info.get("split")), n)
    rows = [TableRow(label, n, _scores(metrics, str(path)), questions)]
    if baselines:
        found = data.get("baselines")
        if not isinstance(found, dict) or not found:
            raise ValueError(f"{path}: --baselines asked for, but the report has no 'baselines'")
        for name, base in found.items():
            scores = _scores(base, f"{path} baselines.{name}")
            rows.append(TableRow(BASELINE_LABELS.get(name, name), n, scores, questions))
    return rows


def table_rows(reports: Sequence[tuple[str, Path | str]], *, baselines: bool = False) -> list[TableRow]:
    """Rows of ``(label, report path)`` pairs in order; with ``baselines``, each group of consecutive
    reports on the same questions is followed by the baselines of its last report."""
    out: list[TableRow] = []
    pending: list[TableRow] = []
    for label, path in reports:
        row, *base = read_table_rows(path, label, baselines=baselines)
        if pending and pending[0].questions != row.questions:
            out.extend(pending)
        out.append(row)
        pending = base
    return out + pending


def format_markdown_table(
    rows: Sequence[TableRow], columns: Sequence[tuple[str, str]] = DEFAULT_COLUMNS
) -> str:
    """``| run | n | <column> ... |`` with scores in % (``-`` where a report lacks the protocol)."""
    if not rows:
        raise ValueError("rows: expected at least one report")
    head = ["run", "n", *(title for _, title in columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        cells = [f"{100 * row.scores[k]:.1f}" if k in row.scores else "-" for k, _ in columns]
        lines.append("| " + " | ".join([row.label, str(row.n), *cells]) + " |")
    return "\n".join(lines)
