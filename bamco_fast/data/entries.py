"""One record builder for every dataset reader: the checks an entry of a split file passes to become a record.

Every reader (Slake, VQA-RAD, PathVQA JSON/JSONL, Hugging Face parquet) walks its file's entries and
hands each one to :meth:`EntryReader.entry` and :meth:`EntryReader.record`, which check, in order:

1. the entry is an object holding the required fields, and those fields are JSON strings (a ``null``
   answer or a numeric question is a malformed entry, not the text "None" or "12345");
2. the question is not empty (after stripping), nor the answer: an entry with an empty answer can be
   neither trained on nor scored (problem kind ``"empty answer"``, which a caller may skip on its own:
   Slake's train.json has one, entry 1621, qid 1622);
3. the ``answer_type`` field, when the entry has one, is OPEN or CLOSED (else it is derived from the answer,
   and ``extra["answer_type_source"] = "derived"``);
4. the entry's language is the one asked for (else it is left out without an error);
5. the question id is not a repeat of an earlier entry's;
6. the image exists (when the reader checks images).

A failed check raises the error naming the file and the entry, or, when the caller passed a
:class:`~bamco_fast.data.errors.SkipLog`, counts it there and leaves the entry out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .common import ImageChecker, handle_problem, normalize_answer_type, wrong_text_fields
from .errors import DataFormatError, SkipLog
from .record import VQARecord, derive_answer_type

__all__ = ["EntryReader"]


@dataclass
class EntryReader:
    """Builds the records of one split file (see the module docstring).

    Args:
        dataset, split: written into every record.
        path: the split file (named in errors).
        images: finds image files (``None`` when the caller supplies ``image_path`` itself).
        skip_log: count bad entries there instead of raising.
        lang: keep only entries in this language (``None``: every language).

    Attributes:
        languages: every language seen; ``kept_in_lang``: entries in ``lang``.
    """

    dataset: str
    split: str
    path: Path
    images: ImageChecker | None = None
    skip_log: SkipLog | None = None
    lang: str | None = None
    languages: set[str] = field(default_factory=set)
    kept_in_lang: int = 0
    _qids: dict[str, str] = field(default_factory=dict)

    def malformed(self, where: str, message: str) -> None:
        handle_problem(
            DataFormatError(f"{where}: {message}", path=self.path), "malformed entry", self.skip_log
        )

    def entry(
        self, where: str, item: object, required: tuple[str, ...], text: tuple[str, ...] | None = None
    ) -> dict | None:
        """``item`` when it is an object holding ``required`` whose ``text`` fields (default: all of
        ``required``) are strings and whose question is not empty; else ``None`` (after reporting)."""
        if not isinstance(item, dict) or any(k not in item for k in required):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            self.malformed(where, f"expected an object with {list(required)}, got {got}")
            return None
        wrong = wrong_text_fields(item, required if text is None else text)
        if wrong:
            self.malformed(where, f"expected string fields, got {wrong}")
            return None
        if not item["question"].strip():
            self.malformed(where, f"expected a non-empty question, got {item['question']!r}")
            return None
        return item

    def _answer_ok(self, where: str, item: dict, qid: str) -> bool:
        if item["answer"].strip():
            return True
        error = DataFormatError(
            f"{where}: expected a non-empty answer, got {item['answer']!r} (qid {qid})", path=self.path
        )
        handle_problem(error, "empty answer", self.skip_log)
        return False

    def _answer_type(self, where: str, item: dict, extra: dict) -> str | None:
        if "answer_type" not in item:
            extra["answer_type_source"] = "derived"
            return derive_answer_type(item["answer"])
        answer_type = normalize_answer_type(item["answer_type"])
        if answer_type is None:
            self.malformed(where, f"answer_type must be OPEN or CLOSED, got {item['answer_type']!r}")
        return answer_type

    def _new_qid(self, where: str, qid: str) -> bool:
        first = self._qids.setdefault(qid, where)
        if first != where:
            self.malformed(where, f"duplicate question id {qid!r} (first used by {first})")
            return False
        return True

    def record(
        self,
        where: str,
        item: dict,
        *,
        image_key: str,
        qid: object,
        item_lang: str = "en",
        extra: dict | None = None,
        image_path: Path | None = None,
    ) -> VQARecord | None:
        """The record of an :meth:`entry` (``where`` names it, e.g. ``"entry 3"``), or ``None`` when it is
        left out; ``image_path`` replaces the image lookup (images the caller extracted itself)."""
        extra = dict(extra or {})
        answer_type = self._answer_type(where, item, extra)
        if answer_type is None:
            return None
        self.languages.add(item_lang)
        if self.lang is not None and item_lang != self.lang:
            return None
        self.kept_in_lang += 1
        qid = str(qid)
        if not self._new_qid(where, qid) or not self._answer_ok(where, item, qid):
            return None
        image_name = item[image_key].replace("\\", "/")
        if image_path is None:
            if not self.images.exists(image_name):
                handle_problem(
                    self.images.missing_error(image_name, self.path, where), "missing image", self.skip_log
                )
                return None
            image_path = self.images.path_for(image_name)
        return VQARecord(
            dataset=self.dataset,
            split=self.split,
            qid=qid,
            image_name=image_name,
            image_path=image_path,
            question=item["question"],
            answer=item["answer"].strip(),
            answer_type=answer_type,
            lang=item_lang,
            extra=extra,
        )

    def check_language(self) -> None:
        """Raise when a language was asked for and no entry of the file has it."""
        if self.lang is not None and self.languages and not self.kept_in_lang:
            raise DataFormatError(
                f"no question in language {self.lang!r} (languages in the file: {sorted(self.languages)})",
                path=self.path,
            )
