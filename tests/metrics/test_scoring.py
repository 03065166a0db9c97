"""``score`` on hand-made predictions, with every number worked out by hand."""

import json
import math

import numpy as np
import pytest
from helpers_metrics import hand_made

from bamco_fast.metrics import (
    METRIC_DESCRIPTIONS,
    Prediction,
    PredictionsError,
    aggregate_runs,
    bootstrap_ci,
    score,
)

# metric: {closed rule: (n, score)}.
# Dataset rule: closed = a, b, c; open = d, e, f (see helpers_metrics.CASES).
# Published rule (yesno): closed = a, b (yes/no answers); c ("Heart") becomes open.
_EXPECTED = {
    "closed_exact": {"dataset": (3, 2 / 3), "yesno": (2, 1 / 2)},
    "open_exact": {"dataset": (3, 1 / 3), "yesno": (4, 2 / 4)},
    "open_recall": {"dataset": (3, 1 / 3), "yesno": (4, 2 / 4)},
    "open_containment_bamco": {"dataset": (3, 1.0), "yesno": (4, 1.0)},
    "overall_exact": {"dataset": (6, 1 / 2), "yesno": (6, 1 / 2)},
    # b is the only miss: c counts by containment ("heart" in "heart.")
    "overall_bamco_published": {"dataset": (6, 5 / 6), "yesno": (6, 5 / 6)},
}


@pytest.mark.parametrize("rule", ["dataset", "yesno"])
def test_hand_made_scores(rule):
    report = score(hand_made(), closed_rule=rule, n_boot=200, seed=3)
    for name, by_rule in _EXPECTED.items():
        n, value = by_rule[rule]
        result = report.metrics[name]
        assert (result.n, result.score) == (n, pytest.approx(value)), name
        assert result.ci_low <= result.score + 1e-12 and result.score - 1e-12 <= result.ci_high
    assert report.closed_rule == rule
    assert report.rule_counts["dataset"] == {"closed": 3, "open": 3}
    assert report.rule_counts["yesno"] == {"closed": 2, "open": 4}
    assert report.rule_counts["closed_by_dataset_not_yesno"] == 1
    assert report.rule_counts["closed_by_yesno_not_dataset"] == 0
    assert report.flags["empty_predictions"] == 1


def test_flags_name_the_containment_quirks():
    report = score(hand_made(), n_boot=0)
    assert report.flags["containment_only"] == {
        "empty_prediction": 1,
        "empty_piece": 0,
        "piece_in_answer": 1,
        "answer_in_piece": 0,
    }
    table = report.format_table()
    assert "1 empty prediction(s)" in table and "correct only under containment" in table


def test_json_report_is_readable_by_other_tools():
    report = score(hand_made(), n_boot=50)
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert list(data["metrics"]) == [m for m in METRIC_DESCRIPTIONS if m != "open_bertscore"]
    for name, row in data["metrics"].items():
        assert isinstance(row["n"], int) and 0.0 <= row["score"] <= 1.0, name
    assert data["normalization"] == ["lower", "punctuation", "articles", "whitespace"]
    assert data["closed_rule"] == "dataset"
    assert any("open_bertscore not computed" in note for note in data["notes"])


def test_bootstrap_is_seeded():
    rows = hand_made()
    a, b = (score(rows, n_boot=300, seed=5, text_metrics=False) for _ in range(2))
    assert a.metrics == b.metrics
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)
    low, high = bootstrap_ci(values, n_boot=2000, seed=0)
    assert low < values.mean() < high and high - low < 0.4
    none = score(rows, n_boot=0, text_metrics=False).metrics["overall_exact"]
    assert math.isnan(none.ci_low) and none.to_json()["ci_low"] is None


def test_no_closed_questions_gives_an_empty_result():
    rows = [Prediction(qid="1", prediction="liver", answer="liver", answer_type="OPEN")]
    result = score(rows, n_boot=10, text_metrics=False).metrics["closed_exact"]
    assert result.n == 0 and math.isnan(result.score) and result.to_json()["score"] is None


def test_bad_rows_are_named():
    with pytest.raises(PredictionsError, match="no predictions"):
        score([])
    with pytest.raises(PredictionsError, match=r"qid 'x' has no 'answer'"):
        score([Prediction(qid="x", prediction="a")])
    with pytest.raises(PredictionsError, match=r"qid 'x' has no 'answer_type'.*--closed-rule yesno"):
        score([Prediction(qid="x", prediction="a", answer="b")])
    assert (
        score([Prediction(qid="x", prediction="a", answer="b")], closed_rule="yesno", n_boot=0).n_questions
        == 1
    )
    with pytest.raises(PredictionsError, match=r"duplicate qid 'a'"):
        score([*hand_made(), hand_made()[0]])
    with pytest.raises(ValueError, match="closed_rule must be one of"):
        score(hand_made(), closed_rule="label")


def test_mean_and_std_over_runs():
    runs = [score(hand_made(), n_boot=0, text_metrics=False)]
    worse = [
        Prediction(qid=p.qid, prediction="x", answer=p.answer, answer_type=p.answer_type) for p in hand_made()
    ]
    runs.append(score(worse, n_boot=0, text_metrics=False))
    summary = aggregate_runs(runs)
    row = summary["overall_exact"]
    assert row["runs"] == [0.5, 0.0] and row["n_runs"] == 2
    assert row["score"] == pytest.approx(0.25) and row["std"] == pytest.approx(math.sqrt(0.125))
