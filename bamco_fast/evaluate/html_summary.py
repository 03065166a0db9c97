"""The summary at the top of a run's HTML report, from its ``report_<split>.json``.

One row per protocol: ``n``, the score in %, its 95% bootstrap interval in %, then the score of each
no-model baseline the report carries (majority answer, train answer of the same question, empty answer)
on the same questions. Below the table: the report's flags (empty predictions, open answers that only
the published containment counts correct) and notes.
"""

from __future__ import annotations

import html
import math

from ..metrics.report import METRIC_DESCRIPTIONS
from ..metrics.table import BASELINE_LABELS, DEFAULT_COLUMNS

__all__ = ["summary_html"]

_TITLES = {**dict(DEFAULT_COLUMNS), "open_bleu1": "open BLEU-1", "open_rouge1": "open ROUGE-1"}


def _pct(value) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return f"{100.0 * value:.1f}"


def _interval(result: dict) -> str:
    low, high = result.get("ci_low"), result.get("ci_high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return ""
    return f"[{100.0 * low:.1f}, {100.0 * high:.1f}]"


def _flag_lines(flags: dict) -> list[str]:
    out = []
    if flags.get("empty_predictions"):
        out.append(
            f"{flags['empty_predictions']} empty prediction(s): wrong under every protocol except the published "
            "containment, which counts them correct"
        )
    only = {k: v for k, v in (flags.get("containment_only") or {}).items() if v}
    if only:
        parts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in only.items())
        out.append(f"{sum(only.values())} open answer(s) correct only under containment ({parts})")
    return out


def summary_html(report: dict) -> str:
    """The summary table (HTML) of a report JSON object; a note when the report is empty."""
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    if not metrics:
        return '<p class="note">No report_&lt;split&gt;.json in the run folder: no summary table.</p>'
    baselines = report.get("baselines") if isinstance(report.get("baselines"), dict) else {}
    head = ["protocol", "n", "score %", "95% interval"] + [BASELINE_LABELS.get(b, b) for b in baselines]
    cells = "".join(
        f'<th class="{"num" if i in (1, 2) or i > 3 else ""}">{html.escape(h)}</th>'
        for i, h in enumerate(head)
    )
    lines = [f'<table class="summary"><thead><tr>{cells}</tr></thead><tbody>']
    for name, result in metrics.items():
        if not isinstance(result, dict):
            continue
        title = html.escape(METRIC_DESCRIPTIONS.get(name, name), quote=True)
        row = [
            f'<td title="{title}">{html.escape(_TITLES.get(name, name))}</td>',
            f'<td class="num">{result.get("n", "")}</td>',
            f'<td class="num"><b>{_pct(result.get("score"))}</b></td>',
            f'<td class="ci">{_interval(result)}</td>',
        ]
        for base in baselines.values():
            value = base.get(name, {}).get("score") if isinstance(base, dict) else None
            row.append(f'<td class="num">{_pct(value)}</td>')
        lines.append("<tr>" + "".join(row) + "</tr>")
    lines.append("</tbody></table>")
    counts = (report.get("rule_counts") or {}).get(report.get("closed_rule", ""), {}) or {}
    lines.append(
        f'<p class="note">{report.get("n_questions", "?")} questions; open/closed by the '
        f"{html.escape(str(report.get('closed_rule', '?')))} rule ({counts.get('closed', '?')} closed, "
        f"{counts.get('open', '?')} open); normalisation for exact match and recall: "
        f"{html.escape(', '.join(report.get('normalization') or []) or 'none')}. Baselines never look at the "
        "image (learnt from the training split).</p>"
    )
    for line in _flag_lines(report.get("flags") or {}):
        lines.append(f'<p class="note warn">{html.escape(line)}</p>')
    for note in report.get("notes") or []:
        lines.append(f'<p class="note">{html.escape(str(note))}</p>')
    return "\n".join(lines)
