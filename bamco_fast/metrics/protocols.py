"""Per-question scoring rules of the Med-VQA protocols in use, and the open/closed split rules.

Every function scores ONE question and returns a float in ``[0, 1]``; a protocol's headline number is
the mean over its questions (see :mod:`bamco_fast.metrics.scoring`).

* :func:`exact_match`: ``1`` iff the normalised prediction equals the normalised answer (strict; what
  most papers call accuracy).
* :func:`token_recall`: LLaVA-Med's open-question recall. Both texts are normalised and split on
  whitespace into word counts; ``tp`` adds, for every word in both, the word's count in the
  *prediction*; ``fn`` adds, for every answer word missing from the prediction, its count in the answer;
  ``recall = tp / (tp + fn)`` (``0`` when either side has no words). Counting the prediction's
  multiplicity is LLaVA-Med's own rule: for the answer ``"left lung"`` the prediction
  ``"left left"`` scores ``2 / 3``, not ``1 / 2``. A long answer that mentions the truth scores 1.
* :func:`bamco_containment`: the published BaMCo open accuracy, quirks included (listed in
  :data:`CONTAINMENT_QUIRKS`): both texts lower-cased and stripped, the prediction split on commas,
  one leading space removed from each piece and from the answer; correct iff some piece is a
  substring of the answer or the answer is a substring of some piece.
* :func:`bamco_published`: the published BaMCo accuracy of any question: yes/no answers by exact
  lower-cased text, every other answer by :func:`bamco_containment`.
* :func:`is_closed`: the open/closed split. ``"dataset"`` uses the dataset's own label (Slake's
  ``answer_type``, VQA-RAD's); ``"yesno"`` is the published rule (closed iff the answer is exactly
  ``yes`` or ``no`` after lower-casing and stripping).
* :func:`question_verdicts`: one question under every rule above, as one dict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .normalize import DEFAULT_STEPS, normalize_answer

__all__ = [
    "CLOSED_RULES",
    "CONTAINMENT_QUIRKS",
    "bamco_containment",
    "bamco_published",
    "containment_reason",
    "exact_match",
    "is_closed",
    "published_text",
    "question_verdicts",
    "token_recall",
]

CLOSED_RULES: tuple[str, ...] = ("dataset", "yesno")

CONTAINMENT_QUIRKS: tuple[str, ...] = (
    "a prediction that is a substring of the answer counts: 'no' is correct for 'nodule', 'left' for "
    "'left lung', 'a' for almost anything",
    "an answer inside a longer prediction counts: 'the liver and the spleen' is correct for 'liver'",
    "an empty prediction counts as correct (the empty string is a substring of every answer)",
    "an empty comma piece counts as correct: a trailing or doubled comma ('liver,' or 'a,,b') makes any "
    "prediction correct",
    "any one comma piece suffices: 'heart, lung, liver, spleen' is correct for 'liver'",
    "only one leading space is removed from each piece and nothing else is trimmed: the piece '  left' "
    "(two spaces) is not found in 'left lung'",
    "no normalisation besides lower-casing and stripping: articles and punctuation are compared as text",
    "only questions whose answer is yes/no are closed (published rule); other closed questions, such as "
    "'Which is bigger, heart or lung?', are scored by containment",
)


def published_text(text: str) -> str:
    """The published code's preprocessing of predictions and answers: strip, then lower-case."""
    return text.strip().lower()


def exact_match(prediction: str, answer: str, steps: Sequence[str] = DEFAULT_STEPS) -> float:
    """``1.0`` iff ``normalize_answer(prediction) == normalize_answer(answer)``, else ``0.0``."""
    return float(normalize_answer(prediction, steps) == normalize_answer(answer, steps))


def token_recall(prediction: str, answer: str, steps: Sequence[str] = DEFAULT_STEPS) -> float:
    """LLaVA-Med's open-question recall (see the module docstring for the counting rule)."""
    pred_words = Counter(normalize_answer(prediction, steps).split())
    answer_words = Counter(normalize_answer(answer, steps).split())
    if not pred_words or not answer_words:
        return 0.0
    tp = sum(count for word, count in pred_words.items() if word in answer_words)
    fn = sum(count for word, count in answer_words.items() if word not in pred_words)
    return tp / (tp + fn) if tp else 0.0


def _drop_one_leading_space(text: str) -> str:
    return text[1:] if text.startswith(" ") else text


def _pieces(prediction: str) -> list[str]:
    return [_drop_one_leading_space(piece) for piece in published_text(prediction).split(",")]


def bamco_containment(prediction: str, answer: str) -> float:
    """The published open accuracy, quirks included (:data:`CONTAINMENT_QUIRKS`); ``1.0`` or ``0.0``."""
    target = _drop_one_leading_space(published_text(answer))
    return float(any(piece in target or target in piece for piece in _pieces(prediction)))


def bamco_published(prediction: str, answer: str) -> float:
    """The published accuracy of one question, whatever its label: a yes/no answer (the published closed
    rule) is correct iff the lower-cased, stripped texts are equal; any other answer by
    :func:`bamco_containment`. ``1.0`` or ``0.0``."""
    if is_closed(answer, None, "yesno"):
        return float(published_text(prediction) == published_text(answer))
    return bamco_containment(prediction, answer)


def containment_reason(prediction: str, answer: str, steps: Sequence[str] = DEFAULT_STEPS) -> str | None:
    """Why containment counts a prediction correct that exact match does not; ``None`` otherwise.

    One of ``"empty_prediction"``, ``"empty_piece"``, ``"piece_in_answer"`` (the prediction or one of
    its comma pieces is a strict part of the answer, e.g. ``"no"`` in ``"nodule"``),
    ``"answer_in_piece"`` (the answer is inside a longer piece).
    """
    if exact_match(prediction, answer, steps) or not bamco_containment(prediction, answer):
        return None
    if not published_text(prediction):
        return "empty_prediction"
    target = _drop_one_leading_space(published_text(answer))
    pieces = _pieces(prediction)
    if any(not piece for piece in pieces):
        return "empty_piece"
    if any(piece in target for piece in pieces):
        return "piece_in_answer"
    return "answer_in_piece"


def is_closed(answer: str, answer_type: str | None, rule: str) -> bool:
    """Whether a question is closed under ``rule`` (``"dataset"`` or ``"yesno"``).

    ``"dataset"`` needs ``answer_type`` (``"OPEN"``/``"CLOSED"``); ``"yesno"`` looks only at the answer.
    """
    if rule == "yesno":
        return published_text(answer) in ("yes", "no")
    if rule == "dataset":
        if answer_type is None:
            raise ValueError("closed_rule='dataset' needs an answer_type for every question")
        return answer_type == "CLOSED"
    raise ValueError(f"closed_rule must be one of {list(CLOSED_RULES)}, got {rule!r}")


def question_verdicts(
    prediction: str,
    answer: str,
    answer_type: str | None,
    *,
    closed_rule: str = "dataset",
    steps: Sequence[str] = DEFAULT_STEPS,
) -> dict:
    """Every rule's verdict on one question: ``exact`` (normalised exact match, the closed or open exact
    protocol by the question's side), ``recall`` (:func:`token_recall`, open questions), ``containment``
    (:func:`bamco_containment`, open questions), ``published`` (:func:`bamco_published`) and ``lenient``
    (why the published rules count a prediction correct that exact match does not, e.g.
    ``"piece_in_answer"``; ``None`` otherwise).

    Returns ``{"closed": bool, "exact": 0|1, "recall": float|None, "containment": 0|1|None,
    "published": 0|1, "lenient": str|None}``; ``None`` where a rule does not score the question's side.
    ``closed_rule="dataset"`` without an ``answer_type`` falls back to the yes/no rule.
    """
    rule = "yesno" if closed_rule == "dataset" and answer_type is None else closed_rule
    closed = is_closed(answer, answer_type, rule)
    exact = int(exact_match(prediction, answer, steps))
    published = int(bamco_published(prediction, answer))
    lenient = None
    if published and not exact:
        lenient = containment_reason(prediction, answer, steps) or "containment"
    return {
        "closed": closed,
        "exact": exact,
        "recall": None if closed else round(token_recall(prediction, answer, steps), 4),
        "containment": None if closed else int(bamco_containment(prediction, answer)),
        "published": published,
        "lenient": lenient,
    }
