"""Readers for knowledge files in the published flat schema (BaMCo's ``KG_*.json`` and our output).

BaMCo's VQA-RAD files name images ``{id}_{train|test}.jpg`` (ids made by the authors' generator);
``image_id_to_synpic.json`` maps them to the original VQA-RAD file names::

    {"Train": {"0_train.jpg": "synpic54610.jpg", ...}, "Test": {"0_test.jpg": "synpic42202.jpg", ...}}

Pass it as ``image_map`` to get records whose ``image`` is the original ``synpicNNNN.jpg``.
"""

from __future__ import annotations

from pathlib import Path

from bamco_fast.data.errors import DataFormatError
from bamco_fast.data.jsonio import read_json

from .schema import FIELDS, KnowledgeRecord

__all__ = ["definition_concepts", "load_image_map", "read_knowledge_file"]


def load_image_map(path: Path) -> dict[str, str]:
    """Flatten an ``image_id_to_synpic.json`` file into ``{"0_train.jpg": "synpic54610.jpg", ...}``."""
    path = Path(path)
    data = read_json(path, "image-id map")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataFormatError('expected {"Train": {id: file, ...}, "Test": {...}}', path=path)
    flat: dict[str, str] = {}
    for group in data.values():
        for key, value in group.items():
            if not isinstance(value, str):
                raise DataFormatError(f"image id {key!r} maps to {value!r}, expected a file name", path=path)
            if key in flat and flat[key] != value:
                raise DataFormatError(f"image id {key!r} mapped twice ({flat[key]!r}, {value!r})", path=path)
            flat[key] = value
    return flat


def read_knowledge_file(path: Path, *, image_map: dict[str, str] | None = None) -> list[KnowledgeRecord]:
    """Read a JSON list of flat knowledge records; ``def_head`` may be null, other fields are strings."""
    path = Path(path)
    items = read_json(path, "knowledge file")
    if not isinstance(items, list):
        raise DataFormatError(f"expected a JSON list of records, got {type(items).__name__}", path=path)
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or any(k not in item for k in FIELDS):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise DataFormatError(f"record {index}: expected fields {list(FIELDS)}, got {got}", path=path)
        bad = [
            k for k in FIELDS if not isinstance(item[k], str) and not (k == "def_head" and item[k] is None)
        ]
        if bad:
            raise DataFormatError(f"record {index}: fields {bad} must be strings", path=path)
        image = item["image"]
        if image_map is not None:
            if image not in image_map:
                raise DataFormatError(
                    f"record {index}: image id {image!r} is not in the image map", path=path
                )
            image = image_map[image]
        records.append(KnowledgeRecord(**{**{k: item[k] for k in FIELDS}, "image": image}))
    return records


def definition_concepts(records: list[KnowledgeRecord]) -> list[dict[str, str]]:
    """One JSONL-knowledge-base concept per head with a definition: ``{"id", "name", "definition"}``.

    Lets a build reuse the definitions of a published file as a definition source
    (``--kb slake-kg:KG --kb jsonl:definitions.jsonl``); the first non-empty definition of each head wins.
    """
    seen: dict[str, str] = {}
    for r in records:
        if r.def_head and r.head_entity not in seen:
            seen[r.head_entity] = r.def_head
    return [{"id": name, "name": name, "definition": seen[name]} for name in sorted(seen)]
