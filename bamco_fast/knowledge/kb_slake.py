"""Slake's own knowledge graph (the ``KG/`` folder of the Slake 1.0 release).

English files, one triple per line, ``#``-separated, with a header line::

    en_organ.csv      organ#attribute#value        e.g. Heart#function#promote blood flow
    en_disease.csv    disease#attribute#value      e.g. Brain Edema#symptom#confusion, local edema
    en_organ_rel.csv  organ#attribute#value        e.g. Heart#belong to#Circulatory System (optional)

Mapping to concepts: the first column is the concept (its name is the id); ``definition`` /
``description`` values are the concept's definition; ``alias`` values are extra names for
matching (and stay relations); every other attribute is a relation whose value is split at commas
into one tail per item (``component#bronchi, alveoli`` -> two tails). Tails ``etc``/``etc.`` are
dropped as noise.

The organ table has no definition attribute at all (Lung, Heart, Kidney, ... have none), so
definitions are optional here (:attr:`definitions_optional`): the builder's default
``missing_definition="auto"`` keeps those heads with ``def_head = null``.
"""

from __future__ import annotations

from pathlib import Path

from bamco_fast.data.errors import DataFormatError, LayoutError, MissingFileError

from .kb_memory import InMemoryKnowledgeBase
from .schema import Concept

__all__ = ["SlakeKnowledgeGraph"]

_REQUIRED = ("en_organ.csv", "en_disease.csv")
_OPTIONAL = ("en_organ_rel.csv",)
_DEFINITION_ATTRS = frozenset({"definition", "description"})
_NOISE_TAILS = frozenset({"etc", "etc.", "..."})


class _Draft:
    def __init__(self, name: str) -> None:
        self.name = name
        self.definition: str | None = None
        self.aliases: list[str] = []
        self.relations: list[tuple[str, str]] = []


class SlakeKnowledgeGraph(InMemoryKnowledgeBase):
    """Reads ``en_organ.csv``, ``en_disease.csv`` and (if present) ``en_organ_rel.csv``."""

    kind = "slake-kg"
    definitions_optional = True

    def __init__(self, folder: Path, *, include_organ_relations: bool = True) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise MissingFileError("Slake KG folder not found", path=folder)
        missing = [name for name in _REQUIRED if not (folder / name).is_file()]
        if missing:
            raise LayoutError(
                f"not a Slake KG folder: missing {missing} (expected {list(_REQUIRED)})", path=folder
            )
        drafts: dict[str, _Draft] = {}
        names = list(_REQUIRED) + (
            [n for n in _OPTIONAL if (folder / n).is_file()] if include_organ_relations else []
        )
        for name in names:
            self._read(folder / name, drafts)
        concepts = [
            Concept(
                d.name,
                d.name,
                d.definition,
                tuple(dict.fromkeys(d.relations)),
                tuple(dict.fromkeys(d.aliases)),
            )
            for d in drafts.values()
        ]
        super().__init__(folder, concepts)

    @staticmethod
    def _read(path: Path, drafts: dict[str, _Draft]) -> None:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                parts = [p.strip() for p in line.split("#")]
                if len(parts) != 3:
                    raise DataFormatError(
                        f"expected 3 '#'-separated fields (entity#attribute#value), got {len(parts)}: {line[:80]!r}",
                        path=path,
                        line=number,
                    )
                head, attribute, value = parts
                if number == 1 and attribute == "attribute":
                    continue  # header
                if not head or not attribute or not value:
                    continue
                draft = drafts.setdefault(head, _Draft(head))
                if attribute in _DEFINITION_ATTRS:
                    draft.definition = draft.definition or value
                    continue
                tails = [t.strip() for t in value.split(",")]
                for tail in tails:
                    if tail and tail.lower() not in _NOISE_TAILS:
                        draft.relations.append((attribute, tail))
                        if attribute == "alias":
                            draft.aliases.append(tail)
