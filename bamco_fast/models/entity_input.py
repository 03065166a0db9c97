"""The ``entities`` knowledge input: question -> the knowledge-base names of the concepts it mentions.

:class:`EntityTexts` holds a fixed vocabulary of entity names (by default the knowledge space's classes,
i.e. the head entities of its training knowledge records) and finds them in questions with the offline
dictionary extractor of :mod:`bamco_fast.knowledge.extract` (spaCy's blank English tokenizer, scispaCy's
abbreviation detector, case-, whitespace- and plural-insensitive phrase matching; no pretrained model, so
the result is the same on every machine). The entity text of a question is the matched names in order of
appearance, without repeats, joined by ``", "`` (:func:`entity_texts`); ``""``
when nothing matches, and the model then embeds the question itself (the published input).

Entity texts depend only on the question string and the vocabulary, so each distinct question is
parsed once and cached. The vocabulary is saved with a trained run (``entities.json``) so that
evaluation and ``predict`` find exactly the entities training saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["ENTITIES_FILE", "EntityTexts", "entity_texts"]

ENTITIES_FILE = "entities.json"
_FORMAT = "bamco_fast.entities"


class EntityTexts:
    """Callable ``questions -> entity texts`` over the entity names ``names``.

    Args:
        names: the vocabulary (knowledge-base names); blank entries are dropped, repeats kept once, the
            order kept (it only decides which spelling a concept id maps to).

    Raises:
        ValueError: ``names`` holds no non-blank string.
    """

    def __init__(self, names: Iterable[str]) -> None:
        if isinstance(names, str):
            raise ValueError(f"names: expected a sequence of entity names, got the string {names!r:.60}")
        cleaned = [str(n).strip() for n in names if n is not None and str(n).strip()]
        self.names: tuple[str, ...] = tuple(dict.fromkeys(cleaned))
        if not self.names:
            raise ValueError("names: expected at least one non-blank entity name, got none")
        self._extractor = None
        self._cache: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def extractor(self):
        """The offline dictionary extractor over :attr:`names` (built on first use; needs spaCy/scispaCy)."""
        if self._extractor is None:
            from bamco_fast.knowledge.extract import OfflineExtractor
            from bamco_fast.knowledge.kb_memory import InMemoryKnowledgeBase
            from bamco_fast.knowledge.schema import Concept

            kb = InMemoryKnowledgeBase(Path("entities"), (Concept(name, name) for name in self.names))
            self._extractor = OfflineExtractor(kb)
        return self._extractor

    def __call__(self, questions: Sequence[str]) -> list[str]:
        """One entity text per question (``""`` where no name of the vocabulary occurs)."""
        todo = [q for q in dict.fromkeys(questions) if q not in self._cache]
        if todo:
            # runs of whitespace collapsed: spaCy makes a token of extra spaces, which breaks a phrase match
            found = entity_texts(self.extractor, [" ".join(q.split()) for q in todo])
            self._cache.update(zip(todo, found))
        return [self._cache[q] for q in questions]

    def coverage(self, questions: Sequence[str]) -> float:
        """Fraction of ``questions`` in which at least one entity is found (0 for no questions)."""
        texts = self(questions)
        return sum(bool(t) for t in texts) / len(texts) if texts else 0.0

    # ------------------------------------------------------------------ files
    def save(self, folder: Path | str) -> Path:
        """Write ``folder/entities.json`` atomically; returns its path."""
        from bamco_fast.data.jsonio import atomic_write_text

        path = Path(folder) / ENTITIES_FILE
        data = {"format": _FORMAT, "version": 1, "names": list(self.names)}
        atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path | str) -> EntityTexts:
        """Read what :meth:`save` wrote into ``folder``."""
        from bamco_fast.data.jsonio import read_json

        path = Path(folder) / ENTITIES_FILE
        data = read_json(path, "entity vocabulary")
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or not isinstance(data.get("names"), list)
        ):
            raise ValueError(f"{path}: expected a {_FORMAT} file with a 'names' list, got {str(data)[:80]!r}")
        return cls(data["names"])

    @classmethod
    def from_knowledge_file(cls, path: Path | str) -> EntityTexts:
        """The head entities of a knowledge file (the flat 7-field records of :mod:`bamco_fast.knowledge`)."""
        from bamco_fast.knowledge.published import read_knowledge_file

        records = read_knowledge_file(Path(path))
        return cls(r.head_entity for r in records)


def entity_texts(extractor, questions: Sequence[str]) -> list[str]:
    """Knowledge texts for ``knowledge_input="entities"``: the knowledge-base names of the concepts an
    extractor of :mod:`bamco_fast.knowledge.extract` finds in each question, in order of appearance,
    without repeats, joined by ``", "``; ``""`` where none is found (the model then embeds the question).
    """
    mentions = extractor.extract(list(questions))
    ids = {m.concept_id for row in mentions for m in row}
    names = {cid: c.name for cid, c in extractor.kb.concepts(ids).items()} if ids else {}
    out = []
    for row in mentions:
        seen: list[str] = []
        for m in sorted(row, key=lambda m: (m.start, m.end)):
            name = names.get(m.concept_id, m.text)
            if name not in seen:
                seen.append(name)
        out.append(", ".join(seen))
    return out
