"""Honest splits: carving a validation split from train, split expressions, and overlap checks.

* :func:`carve_validation` moves a seeded random share of train *images* (with all their questions)
  to a validation split, so the validation split shares no image with what is trained on.
* :func:`parse_split_expr` reads expressions such as ``train``, ``test[:300]`` or
  ``train+test[:300]`` (Hugging Face ``datasets`` slicing), used to reproduce and measure splits
  that other code bases build by concatenation.
* :func:`overlap_report` compares two record lists at three levels: question text, (image, question)
  pair and image. A shared (image, question) pair is a leaked test item.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .record import VQARecord, normalize_question

__all__ = ["SplitOverlap", "carve_validation", "overlap_report", "parse_split_expr"]

_ALIASES = {
    "train": "train",
    "val": "validate",
    "validate": "validate",
    "validation": "validate",
    "test": "test",
}
_PART = re.compile(r"^(?P<name>[a-z]+)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


def parse_split_expr(expr: str) -> list[tuple[str, slice]]:
    """``"train+test[:300]"`` -> ``[("train", slice(None)), ("test", slice(None, 300))]``."""
    parts: list[tuple[str, slice]] = []
    for raw in expr.replace(" ", "").split("+"):
        match = _PART.match(raw)
        if not match or match["name"] not in _ALIASES:
            raise ValueError(
                f"bad split expression {expr!r}: each '+'-separated part must be train, validate or test, "
                f"optionally sliced like test[:300]; got {raw!r}"
            )
        start = int(match["start"]) if match["start"] else None
        stop = int(match["stop"]) if match["stop"] else None
        parts.append((_ALIASES[match["name"]], slice(start, stop)))
    return parts


def carve_validation(
    records: Sequence[VQARecord], *, fraction: float, seed: int
) -> tuple[list[VQARecord], list[VQARecord]]:
    """Split train records into (train, validate) by image, deterministically for a given seed.

    ``ceil(fraction * n_images)`` images (sorted, then shuffled with ``random.Random(seed)``) go to
    validation together with all their questions; record order within each part is kept.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    images = sorted({r.image_name for r in records})
    if len(images) < 2:
        raise ValueError(f"cannot carve a validation split from {len(images)} image(s)")
    random.Random(seed).shuffle(images)
    n_val = min(len(images) - 1, max(1, math.ceil(fraction * len(images))))
    val_images = set(images[:n_val])
    train = [r for r in records if r.image_name not in val_images]
    val = [r for r in records if r.image_name in val_images]
    return train, val


@dataclass(frozen=True)
class SplitOverlap:
    """Overlap of split ``b`` with split ``a`` (counts of distinct keys and of affected ``b`` items)."""

    a: str
    b: str
    n_a: int
    n_b: int
    questions: int
    b_items_with_seen_question: int
    image_questions: int
    b_items_leaked: int
    images: int
    b_images: int

    @property
    def leaks(self) -> bool:
        """True when some (image, question) pair of ``b`` also occurs in ``a``."""
        return self.image_questions > 0

    def format(self) -> str:
        pct = 100.0 * self.b_items_leaked / self.n_b if self.n_b else 0.0
        return (
            f"{self.a} ({self.n_a} QA) vs {self.b} ({self.n_b} QA):\n"
            f"  question text shared:     {self.questions} distinct; {self.b_items_with_seen_question} {self.b} items\n"
            f"  (image, question) shared: {self.image_questions} distinct; {self.b_items_leaked} {self.b} items "
            f"({pct:.1f}%){'  <-- LEAK' if self.leaks else ''}\n"
            f"  images shared:            {self.images} of {self.b_images} {self.b} images"
        )


def overlap_report(a_name: str, a: Sequence[VQARecord], b_name: str, b: Sequence[VQARecord]) -> SplitOverlap:
    """Compare two splits; questions are compared after :func:`normalize_question`."""
    a_q = {normalize_question(r.question) for r in a}
    a_iq = {(r.image_name, normalize_question(r.question)) for r in a}
    a_img = {r.image_name for r in a}
    b_q = [normalize_question(r.question) for r in b]
    b_iq = [(r.image_name, q) for r, q in zip(b, b_q)]
    b_img = {r.image_name for r in b}
    return SplitOverlap(
        a=a_name,
        b=b_name,
        n_a=len(a),
        n_b=len(b),
        questions=len(a_q & set(b_q)),
        b_items_with_seen_question=sum(q in a_q for q in b_q),
        image_questions=len(a_iq & set(b_iq)),
        b_items_leaked=sum(k in a_iq for k in b_iq),
        images=len(a_img & b_img),
        b_images=len(b_img),
    )
