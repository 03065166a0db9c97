"""The knowledge-base interface and the ``KIND:PATH`` spec parser.

A knowledge base answers two questions, both in bulk so that large sources (UMLS) can be streamed:

* :meth:`KnowledgeBase.match_names` - which of these lookup keys (:func:`~.schema.compact_key` of a
  text span) are names or aliases of concepts, and of which concepts;
* :meth:`KnowledgeBase.concepts` - the name, definition and relations of these concept ids.

:meth:`KnowledgeBase.iter_names` lists every name once, for the scispaCy linker's index
(:mod:`.linking`).

Kinds: ``umls`` (a Metathesaurus folder, :mod:`.kb_umls`), ``slake-kg`` (Slake's KG CSV folder,
:mod:`.kb_slake`), ``jsonl`` (a custom concept file, :mod:`.kb_jsonl`).
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from pathlib import Path
from typing import Protocol, runtime_checkable

from .schema import Concept, NameHit

__all__ = ["KB_KINDS", "KnowledgeBase", "open_knowledge_base", "parse_kb_spec"]

KB_KINDS: tuple[str, ...] = ("umls", "slake-kg", "jsonl")


@runtime_checkable
class KnowledgeBase(Protocol):
    kind: str
    source: Path
    #: relation labels this source's records should never carry (noise); compared lower-cased
    dropped_relations: frozenset[str]
    #: True when the source, by design, has no definition for some kinds of concept (Slake's KG has
    #: none for organs): a missing definition then is not a sign of noise, and the builder's
    #: ``missing_definition="auto"`` keeps such records instead of dropping them
    definitions_optional: bool
    #: optional: the number of relations the source holds (``None`` when unknown without a full read);
    #: the builder refuses a first knowledge base with 0, since every record is a relation

    def match_names(self, keys: Set[str]) -> dict[str, list[NameHit]]:
        """Map each key in ``keys`` that names a concept to its hits (best first)."""
        ...

    def concepts(self, concept_ids: Set[str]) -> dict[str, Concept]:
        """Full concepts for the ids that exist."""
        ...

    def iter_names(self) -> Iterator[tuple[str, str, bool]]:
        """Every ``(concept_id, name, preferred)`` the source links to (for scispaCy's linker index)."""
        ...


def parse_kb_spec(spec: str) -> tuple[str, Path]:
    """``"umls:/data/2024AA/META"`` -> ``("umls", Path(...))``; raises ValueError naming the kinds."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KB_KINDS or not path:
        raise ValueError(f"--kb must be KIND:PATH with KIND one of {list(KB_KINDS)}, got {spec!r}")
    return kind, Path(path)


def open_knowledge_base(spec: str, **options) -> KnowledgeBase:
    """Open a knowledge base from a ``KIND:PATH`` spec; ``options`` go to the kind's constructor."""
    kind, path = parse_kb_spec(spec)
    if kind == "umls":
        from .kb_umls import UmlsKnowledgeBase

        return UmlsKnowledgeBase(path, **options)
    if kind == "slake-kg":
        from .kb_slake import SlakeKnowledgeGraph

        return SlakeKnowledgeGraph(path, **options)
    from .kb_jsonl import JsonlKnowledgeBase

    return JsonlKnowledgeBase(path, **options)
