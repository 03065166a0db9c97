"""BLEU-1 and ROUGE-1 per answer, against values worked out by hand."""

import math

import pytest

from bamco_fast.metrics import score
from bamco_fast.metrics.text_metrics import bleu1_scores, rouge1_scores

pytest.importorskip("sacrebleu", reason="sacrebleu is a core dependency; install it to score BLEU-1")
pytest.importorskip("rouge_score", reason="rouge-score is a core dependency; install it to score ROUGE-1")


def test_bleu1_is_unigram_precision_times_brevity_penalty():
    preds = ["left lung", "Left", "", "the left lung", "liver"]
    refs = ["left lung", "left lung", "left lung", "Left Lung", "spleen"]
    expected = [1.0, math.exp(1 - 2 / 1), 0.0, 2 / 3, 0.0]  # "Left": p1 = 1, BP = exp(1 - 2/1)
    assert bleu1_scores(preds, refs) == pytest.approx(expected)


def test_rouge1_is_unigram_f1():
    preds = ["left lung", "left", "", "the left lung", "liver"]
    refs = ["left lung", "left lung", "left lung", "left lung", "spleen"]
    expected = [1.0, 2 * 1 * 0.5 / 1.5, 0.0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 0.0]
    assert rouge1_scores(preds, refs) == pytest.approx(expected)


def test_text_metrics_average_over_open_questions_only():
    from bamco_fast.metrics import Prediction

    rows = [
        Prediction(qid="1", prediction="yes", answer="no", answer_type="CLOSED"),
        Prediction(qid="2", prediction="left", answer="left lung", answer_type="OPEN"),
        Prediction(qid="3", prediction="liver", answer="liver", answer_type="OPEN"),
    ]
    report = score(rows, n_boot=0)
    assert report.metrics["open_bleu1"].n == 2
    assert report.metrics["open_bleu1"].score == pytest.approx((math.exp(-1) + 1) / 2)
    assert report.metrics["open_rouge1"].score == pytest.approx((2 / 3 + 1) / 2)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same length"):
        bleu1_scores(["a"], [])
