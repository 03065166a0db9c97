"""In-memory knowledge base, the common base of the small sources (Slake KG, custom JSONL)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Set
from pathlib import Path

from .schema import Concept, NameHit, compact_key

__all__ = ["InMemoryKnowledgeBase"]


class InMemoryKnowledgeBase:
    """Holds all concepts; names and aliases are indexed by :func:`compact_key`."""

    kind = "memory"
    dropped_relations: frozenset[str] = frozenset()
    definitions_optional: bool = False

    def __init__(self, source: Path, concepts: Iterable[Concept]) -> None:
        self.source = Path(source)
        self._concepts: dict[str, Concept] = {}
        self._names: dict[str, list[NameHit]] = {}
        for concept in concepts:
            self._concepts[concept.concept_id] = concept
            self._index(concept.name, concept.concept_id, preferred=True)
            for alias in concept.aliases:
                self._index(alias, concept.concept_id, preferred=False)

    def _index(self, name: str, concept_id: str, *, preferred: bool) -> None:
        key = compact_key(name)
        if not key:
            return
        hits = self._names.setdefault(key, [])
        if all(h.concept_id != concept_id for h in hits):
            hits.append(NameHit(concept_id, name, preferred))
            hits.sort(key=lambda h: (not h.preferred, h.concept_id))

    def __len__(self) -> int:
        return len(self._concepts)

    @property
    def relation_count(self) -> int:
        """Number of (concept, relation, tail) triples held; 0 means no record can be built from it."""
        return sum(len(c.relations) for c in self._concepts.values())

    def match_names(self, keys: Set[str]) -> dict[str, list[NameHit]]:
        return {k: list(self._names[k]) for k in keys if k in self._names}

    def concepts(self, concept_ids: Set[str]) -> dict[str, Concept]:
        return {c: self._concepts[c] for c in concept_ids if c in self._concepts}

    def iter_names(self) -> Iterator[tuple[str, str, bool]]:
        for concept in self._concepts.values():
            yield concept.concept_id, concept.name, True
            for alias in concept.aliases:
                yield concept.concept_id, alias, False
