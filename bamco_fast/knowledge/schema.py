"""Knowledge record and concept types.

A knowledge file is a JSON list of flat records (the schema of BaMCo's published files)::

    {"image": "xmlab100/source.jpg",            # image name relative to the dataset's image folder
     "question": "...", "answer": "...",        # the QA pair the head entity was extracted from
     "head_entity": "Heart",                     # the knowledge base's name of the concept
     "tail_entity": "myocardium",                # the related concept / attribute value
     "def_head": "The hollow, muscular organ...",# definition of the head (null where none)
     "relation": "component"}                    # relation label, '_' replaced by ' '

read as "head_entity [relation] tail_entity".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["FIELDS", "Concept", "KnowledgeRecord", "NameHit", "compact_key"]

FIELDS: tuple[str, ...] = (
    "image",
    "question",
    "answer",
    "head_entity",
    "tail_entity",
    "def_head",
    "relation",
)


@dataclass(frozen=True, order=True)
class KnowledgeRecord:
    """One "head [relation] tail" item tied to the image and QA pair it came from."""

    image: str
    question: str
    answer: str
    head_entity: str
    tail_entity: str
    def_head: str | None
    relation: str

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Concept:
    """A knowledge-base concept: id, display name, definition and outgoing ``(relation, tail)`` pairs."""

    concept_id: str
    name: str
    definition: str | None = None
    relations: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class NameHit:
    """A knowledge-base name whose :func:`compact_key` matched; ``preferred`` marks a preferred term."""

    concept_id: str
    name: str
    preferred: bool = False


def compact_key(text: str) -> str:
    """Case- and whitespace-insensitive lookup key: lower-case with all whitespace removed."""
    return "".join(text.lower().split())
