"""A custom vocabulary as JSON Lines, one concept per line::

    {"id": "C1", "name": "Lung", "aliases": ["lungs"],
     "definition": "Either of the pair of organs ...",
     "relations": [{"relation": "part of", "tail": "respiratory system"}]}

``id`` and ``name`` are required; ``aliases``, ``definition`` and ``relations`` are optional.
A ``tail`` may instead be given as ``tail_id`` (the id of another concept in the file), whose name
is then used.
"""

from __future__ import annotations

from pathlib import Path

from bamco_fast.data.errors import DataFormatError
from bamco_fast.data.jsonio import iter_jsonl

from .kb_memory import InMemoryKnowledgeBase
from .schema import Concept

__all__ = ["JsonlKnowledgeBase"]


def _strings(value: object, what: str, path: Path, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataFormatError(f"{what} must be a list of strings, got {value!r}", path=path, line=line)
    return tuple(value)


class JsonlKnowledgeBase(InMemoryKnowledgeBase):
    kind = "jsonl"

    def __init__(self, path: Path) -> None:
        path = Path(path)
        rows: list[tuple[int, dict]] = []
        names: dict[str, str] = {}
        for line, item in iter_jsonl(path, "knowledge JSONL file"):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("id"), str)
                or not isinstance(item.get("name"), str)
            ):
                raise DataFormatError(
                    f"expected an object with string fields 'id' and 'name', got {item!r:.120}",
                    path=path,
                    line=line,
                )
            if item["id"] in names:
                raise DataFormatError(f"duplicate concept id {item['id']!r}", path=path, line=line)
            names[item["id"]] = item["name"]
            rows.append((line, item))
        concepts = []
        for line, item in rows:
            definition = item.get("definition")
            if definition is not None and not isinstance(definition, str):
                raise DataFormatError(
                    f"'definition' must be a string or null, got {definition!r}", path=path, line=line
                )
            relations = []
            for rel in item.get("relations") or []:
                if not isinstance(rel, dict) or not isinstance(rel.get("relation"), str):
                    raise DataFormatError(
                        f"each relation needs a string 'relation', got {rel!r}", path=path, line=line
                    )
                tail = rel.get("tail")
                if tail is None and rel.get("tail_id") is not None:
                    if rel["tail_id"] not in names:
                        raise DataFormatError(
                            f"tail_id {rel['tail_id']!r} is not a concept id in this file",
                            path=path,
                            line=line,
                        )
                    tail = names[rel["tail_id"]]
                if not isinstance(tail, str):
                    raise DataFormatError(
                        f"each relation needs a string 'tail' or a 'tail_id', got {rel!r}",
                        path=path,
                        line=line,
                    )
                relations.append((rel["relation"], tail))
            aliases = _strings(item.get("aliases"), "'aliases'", path, line)
            concepts.append(Concept(item["id"], item["name"], definition, tuple(relations), aliases))
        super().__init__(path, concepts)
