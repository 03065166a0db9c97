"""The one record type shared by every dataset reader.

A :class:`VQARecord` is one question-answer pair about one image:

============  ==================================================================================
field         meaning
============  ==================================================================================
dataset       ``"slake"``, ``"vqa-rad"`` or ``"pathvqa"``
split         ``"train"``, ``"validate"`` or ``"test"``
qid           the dataset's own question id, as a string (``"<split>-<row>"`` where it has none)
image_name    the image's name relative to the dataset's image folder, e.g.
              ``"xmlab102/source.jpg"`` (Slake), ``"synpic54610.jpg"`` (VQA-RAD); this is the value
              knowledge files store in their ``image`` field
image_path    absolute path of the image file
question      question text, unchanged
answer        answer text, unchanged (surrounding whitespace removed)
answer_type   ``"OPEN"`` or ``"CLOSED"`` as the dataset labels it; for files without a label
              (Hugging Face VQA-RAD/PathVQA) it is derived: ``CLOSED`` iff the answer is yes/no, and
              ``extra["answer_type_source"] == "derived"``
lang          ISO language code of the question (``"en"``, ``"zh"``)
extra         dataset-specific fields (Slake: ``content_type``, ``modality``, ``location``,
              ``triple``, ``base_type``, ``img_id``; VQA-RAD: ``phrase_type``, ``question_type``,
              ``image_organ``, ...)
============  ==================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ANSWER_TYPES", "SPLITS", "VQARecord", "derive_answer_type", "normalize_question"]

SPLITS: tuple[str, ...] = ("train", "validate", "test")
ANSWER_TYPES: tuple[str, ...] = ("OPEN", "CLOSED")

_NON_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class VQARecord:
    """One question-answer pair about one image (see the module docstring for the fields)."""

    dataset: str
    split: str
    qid: str
    image_name: str
    image_path: Path
    question: str
    answer: str
    answer_type: str
    lang: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_closed(self) -> bool:
        return self.answer_type == "CLOSED"


def normalize_question(text: str) -> str:
    """Lower-case, replace punctuation by spaces and collapse whitespace.

    Used to compare questions across splits and file versions (the Hugging Face VQA-RAD copy is
    lower-cased, the official one is not).
    """
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text.lower())).strip()


def derive_answer_type(answer: str) -> str:
    """``CLOSED`` for yes/no answers, ``OPEN`` otherwise (the convention of PathVQA and HF copies)."""
    return "CLOSED" if answer.strip().lower() in {"yes", "no"} else "OPEN"
