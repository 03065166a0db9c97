"""Answer normalisation as a list of named steps.

Every report states the steps it used, so a number can be reproduced elsewhere. The steps run in the
fixed order of :data:`STEPS`, whatever order they are given in:

==============  ======================================================================================
step            what it does
==============  ======================================================================================
``lower``       Unicode case folding (``str.casefold``): ``"Left Lung"`` -> ``"left lung"``
``punctuation`` every Unicode punctuation character (category ``P*``) becomes a space:
                ``"lung, left."`` -> ``"lung  left "``; ``"x-ray"`` -> ``"x ray"`` (on both sides, so
                the comparison stays symmetric)
``articles``    drops the English words ``a``, ``an``, ``the``: ``"the liver"`` -> ``"liver"``
``whitespace``  strips and collapses runs of whitespace to one space
==============  ======================================================================================

:data:`DEFAULT_STEPS` uses all four. Exact match, token recall and the baselines compare normalised
text; the published containment protocol and the text metrics (BLEU-1, ROUGE-1, BERTScore) follow the
published code instead (lower-case and strip only), see :mod:`bamco_fast.metrics.protocols`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

__all__ = ["DEFAULT_STEPS", "STEPS", "normalize_answer", "parse_steps"]

STEPS: tuple[str, ...] = ("lower", "punctuation", "articles", "whitespace")
DEFAULT_STEPS: tuple[str, ...] = STEPS
_ARTICLES = frozenset({"a", "an", "the"})


def parse_steps(steps: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate ``steps`` (a comma-separated string, an iterable, ``None`` = default, ``"none"`` = no step).

    Returns the steps in canonical order. An unknown name raises ``ValueError`` listing the valid ones.
    """
    if steps is None:
        return DEFAULT_STEPS
    if isinstance(steps, str):
        steps = [] if steps.strip().lower() == "none" else [s.strip() for s in steps.split(",") if s.strip()]
    chosen = set(steps)
    unknown = sorted(chosen - set(STEPS))
    if unknown:
        raise ValueError(f"normalisation steps must be among {list(STEPS)} (or 'none'), got {unknown}")
    return tuple(step for step in STEPS if step in chosen)


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def normalize_answer(text: str, steps: Sequence[str] = DEFAULT_STEPS) -> str:
    """Apply the named ``steps`` (see the module docstring) to ``text`` and return the result."""
    if "lower" in steps:
        text = text.casefold()
    if "punctuation" in steps:
        text = _strip_punctuation(text)
    if "articles" in steps:
        text = " ".join(word for word in text.split() if word not in _ARTICLES)
    if "whitespace" in steps:
        text = " ".join(text.split())
    return text
