"""Hand-made cases that separate the protocols from each other."""

import pytest

from bamco_fast.metrics import bamco_containment, exact_match, is_closed, token_recall
from bamco_fast.metrics.protocols import containment_reason

# (prediction, answer, exact, recall, containment, why containment alone says correct)
_CASES = [
    ("no", "nodule", 0.0, 0.0, 1.0, "piece_in_answer"),
    ("left", "left lung", 0.0, 0.5, 1.0, "piece_in_answer"),
    ("", "liver", 0.0, 0.0, 1.0, "empty_prediction"),
    ("   ", "liver", 0.0, 0.0, 1.0, "empty_prediction"),
    ("spleen,", "liver", 0.0, 0.0, 1.0, "empty_piece"),  # trailing comma -> empty piece
    ("heart,,spleen", "liver", 0.0, 0.0, 1.0, "empty_piece"),
    ("heart, liver", "liver", 0.0, 1.0, 1.0, "piece_in_answer"),  # comma list: one piece suffices
    ("the liver and the spleen", "liver", 0.0, 1.0, 1.0, "answer_in_piece"),
    ("Liver.", "liver", 1.0, 1.0, 1.0, None),  # case and punctuation: right everywhere
    ("The Liver", "liver", 1.0, 1.0, 1.0, None),
    ("liver, spleen", "Liver, Spleen", 1.0, 1.0, 1.0, None),
    ("heart", "liver", 0.0, 0.0, 0.0, None),
    ("  left", "left lung", 0.0, 0.5, 1.0, "piece_in_answer"),  # one piece, stripped as a whole first
    ("heart,  left", "left lung", 0.0, 0.5, 0.0, None),  # second piece keeps one leading space
]


@pytest.mark.parametrize(("pred", "answer", "exact", "recall", "contain", "reason"), _CASES)
def test_protocols_separate(pred, answer, exact, recall, contain, reason):
    assert exact_match(pred, answer) == exact
    assert token_recall(pred, answer) == pytest.approx(recall)
    assert bamco_containment(pred, answer) == contain
    assert containment_reason(pred, answer) == reason


def test_exact_match_depends_on_the_normalisation_steps():
    assert exact_match("Liver.", "liver", ()) == 0.0
    assert exact_match("Liver.", "liver", ("lower", "whitespace")) == 0.0
    assert exact_match("Liver.", "liver", ("lower", "punctuation", "whitespace")) == 1.0
    assert exact_match("the liver", "liver", ("lower", "whitespace")) == 0.0


def test_token_recall_counts_prediction_multiplicity_like_llava_med():
    # tp adds the prediction's count of each shared word (2 x "left"), fn the missing answer words (1 x "lung")
    assert token_recall("left left", "left lung") == pytest.approx(2 / 3)
    assert token_recall("the left lung is enlarged", "left lung") == 1.0  # verbose answers score 1
    assert token_recall("", "") == 0.0


def test_closed_rules():
    assert is_closed(" Yes ", "OPEN", "yesno") and not is_closed("Yes", "OPEN", "dataset")
    assert is_closed("Heart", "CLOSED", "dataset") and not is_closed("Heart", "CLOSED", "yesno")
    with pytest.raises(ValueError, match="answer_type"):
        is_closed("Heart", None, "dataset")
    with pytest.raises(ValueError, match="closed_rule must be one of"):
        is_closed("yes", "CLOSED", "label")
