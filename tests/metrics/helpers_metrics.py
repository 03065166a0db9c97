"""Hand-made predictions whose scores under every protocol are worked out by hand in the tests."""

from __future__ import annotations

from bamco_fast.metrics import Prediction

# qid: (prediction, answer, dataset answer_type)
CASES: dict[str, tuple[str, str, str]] = {
    "a": ("Yes", "yes", "CLOSED"),  # closed, right after case folding
    "b": ("yes", "no", "CLOSED"),  # closed, wrong
    "c": ("heart.", "Heart", "CLOSED"),  # closed by the dataset label but not yes/no
    "d": ("no", "nodule", "OPEN"),  # only containment counts it
    "e": ("", "liver", "OPEN"),  # empty prediction: only containment counts it
    "f": ("Left lung", "left lung", "OPEN"),  # right under every protocol
}


def hand_made(with_types: bool = True) -> list[Prediction]:
    return [
        Prediction(qid=q, prediction=p, answer=a, answer_type=t if with_types else None)
        for q, (p, a, t) in CASES.items()
    ]
