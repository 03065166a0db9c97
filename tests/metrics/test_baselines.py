"""No-model baselines on a small synthetic split."""

from bamco_fast.data import VQARecord
from bamco_fast.metrics import baseline_predictions, score_baselines


def _rec(qid, question, answer, answer_type, split="train"):
    return VQARecord("slake", split, qid, "img.jpg", "/img.jpg", question, answer, answer_type, "en")


_TRAIN = [
    _rec("1", "Is this a CT?", "Yes", "CLOSED"),
    _rec("2", "Is this a CT?", "yes", "CLOSED"),
    _rec("3", "Is the lung healthy?", "No", "CLOSED"),
    _rec("4", "Which organ is shown?", "Liver", "OPEN"),
    _rec("5", "What is abnormal?", "nodule", "OPEN"),
    _rec("6", "What is abnormal?", "Nodule", "OPEN"),
    _rec("7", "Which organ is shown?", "Liver", "OPEN"),
    _rec("8", "Where is the lesion?", "left lung", "OPEN"),
]
_TEST = [
    _rec("t1", "is this a CT", "yes", "CLOSED", "test"),  # same question text after normalisation
    _rec("t2", "Which is bigger, heart or lung?", "Heart", "CLOSED", "test"),  # unseen -> majority of CLOSED
    _rec("t3", "What is abnormal?", "mass", "OPEN", "test"),
    _rec("t4", "Which plane?", "no", "OPEN", "test"),
]


def test_baseline_predictions():
    rows = baseline_predictions(_TRAIN, _TEST)
    assert [p.prediction for p in rows["majority"]] == ["Yes", "Yes", "Liver", "Liver"]
    # "nodule" and "Nodule" count as one answer; of its spellings the one that sorts first is used
    assert [p.prediction for p in rows["question_prior"]] == ["Yes", "Yes", "Nodule", "Liver"]
    assert [p.extra["baseline_source"] for p in rows["question_prior"]] == [
        "question",
        "type",
        "question",
        "type",
    ]
    assert {p.prediction for p in rows["empty"]} == {""}
    assert all(
        p.answer == r.answer and p.answer_type == r.answer_type for p, r in zip(rows["majority"], _TEST)
    )


def test_score_baselines_under_every_protocol():
    reports = score_baselines(_TRAIN, _TEST, n_boot=0)
    assert set(reports) == {"majority", "question_prior", "empty"}
    assert reports["majority"].metrics["closed_exact"].score == 0.5
    assert reports["question_prior"].info["baseline"]["question_seen_in_train"] == 2
    empty = reports["empty"].metrics
    assert empty["open_exact"].score == 0.0 and empty["open_containment_bamco"].score == 1.0
    only = score_baselines(_TRAIN, _TEST, qids={"t1", "t3"}, n_boot=0)["majority"]
    assert only.n_questions == 2
