"""Knowledge records -> the tables a knowledge-space pretraining run samples from.

One training sample is one knowledge record (``head [relation] tail`` tied to an image, schema in
:mod:`bamco_fast.knowledge.schema`). :func:`load_knowledge_table` turns a list of records into a
:class:`KnowledgeTable`:

* **classes** = the distinct head entities of the records, in order of first appearance in the file
  (the published code's order, so class indices agree with the authors' checkpoints for the same
  file). With ``lowercase=True`` (default, as published) heads, definitions, relations and tails are
  lower-cased first, so ``Heart`` and ``heart`` are one class.
* **class counts** = the number of *records* (not images) of each class, the prior of the
  logit-adjusted cross-entropy.
* **image pools** = per class, the distinct images of its records (order of first appearance); the
  intra-class images of a sample are drawn from its class's pool.
* **strings** = the finite table of distinct training texts. Each record has three texts: the entity
  name, the definition and ``"<relation> <tail>"`` (single space, head not included, as published).
  ``record_text[i] = (entity, definition, relation)`` indexes this table, so frozen text-tower
  outputs are computed once per string.

Records whose ``def_head`` is null (Slake's organs have no definition in Slake's own KG) use the
entity name as their definition text (``missing_definition="name"``, default) or are dropped
(``"drop"``, what the published loader does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bamco_fast.knowledge.schema import KnowledgeRecord

__all__ = [
    "MISSING_DEFINITION",
    "TEXT_KINDS",
    "KnowledgeTable",
    "KnowledgeTableError",
    "load_knowledge_table",
]

TEXT_KINDS: tuple[str, ...] = ("entity", "definition", "relation")
MISSING_DEFINITION: tuple[str, ...] = ("name", "drop")
_SHOW = 5  # how many offending names an error message lists


class KnowledgeTableError(ValueError):
    """Knowledge records that cannot be turned into a training table (missing images, empty input, ...)."""


@dataclass(frozen=True)
class KnowledgeTable:
    """Records, classes, image pools and text table of one knowledge file.

    Attributes:
        records: the records kept, in file order (``N`` of them).
        image_root: folder the records' ``image`` names are relative to.
        classes: ``C`` class names (head entities, first-appearance order, or the ``classes`` given).
        class_counts: ``(C,)`` int64, records per class.
        images: ``M`` distinct image names (first-appearance order).
        strings: ``T`` distinct training texts (first-appearance order over entity, definition, relation).
        record_class: ``(N,)`` int64 class of each record; ``-1`` for a head outside a given class list.
        record_image: ``(N,)`` int64 index into ``images``.
        record_text: ``(N, 3)`` int64 indices into ``strings`` for (entity, definition, relation).
        pool_offsets: ``(C + 1,)`` int64; class ``c``'s pool is ``pool_images[pool_offsets[c]:pool_offsets[c+1]]``.
        pool_images: ``(P,)`` int64 image indices of all pools, concatenated.
        dropped_no_definition: records dropped because ``def_head`` was null (``missing_definition="drop"``).
    """

    records: tuple[KnowledgeRecord, ...]
    image_root: Path
    classes: tuple[str, ...]
    class_counts: torch.Tensor
    images: tuple[str, ...]
    strings: tuple[str, ...]
    record_class: torch.Tensor
    record_image: torch.Tensor
    record_text: torch.Tensor
    pool_offsets: torch.Tensor
    pool_images: torch.Tensor
    dropped_no_definition: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_paths(self) -> list[Path]:
        """Absolute paths of :attr:`images`."""
        return [self.image_root / name for name in self.images]

    @property
    def pool_sizes(self) -> torch.Tensor:
        """``(C,)`` int64: distinct images per class."""
        return self.pool_offsets[1:] - self.pool_offsets[:-1]

    def pool(self, class_index: int) -> list[str]:
        """Image names of class ``class_index``'s pool."""
        lo, hi = int(self.pool_offsets[class_index]), int(self.pool_offsets[class_index + 1])
        return [self.images[i] for i in self.pool_images[lo:hi].tolist()]

    def texts(self, kind: str) -> list[str]:
        """The ``kind`` text (``entity``, ``definition`` or ``relation``) of every record."""
        column = TEXT_KINDS.index(kind)
        return [self.strings[i] for i in self.record_text[:, column].tolist()]


def _read(records: Path | str | Sequence[KnowledgeRecord], image_map: dict[str, str] | None):
    if isinstance(records, (str, Path)):
        from bamco_fast.knowledge.published import read_knowledge_file

        path = Path(records)
        return path, read_knowledge_file(path, image_map=image_map)
    out = []
    for index, record in enumerate(records):
        if not isinstance(record, KnowledgeRecord):
            raise TypeError(
                f"records[{index}]: expected a KnowledgeRecord (or a knowledge file path), "
                f"got {type(record).__name__}"
            )
        if image_map is not None:
            if record.image not in image_map:
                raise KnowledgeTableError(f"records[{index}]: image id {record.image!r} is not in image_map")
            record = KnowledgeRecord(**{**record.to_json(), "image": image_map[record.image]})
        out.append(record)
    return None, out


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return f"{len(names)}: {shown}{more}"


def _kept_records(
    items: list[KnowledgeRecord], source: str, missing_definition: str
) -> tuple[list[KnowledgeRecord], int]:
    """The records kept (``def_head: null`` ones dropped when ``missing_definition="drop"``) and the drop count."""
    kept: list[KnowledgeRecord] = []
    dropped = 0
    for record in items:
        if record.def_head is None and missing_definition == "drop":
            dropped += 1
            continue
        kept.append(record)
    if not kept:
        raise KnowledgeTableError(
            f"{source}: all {len(items)} records have def_head null and missing_definition='drop'"
        )
    return kept, dropped


def _image_index(
    kept: list[KnowledgeRecord], image_root: Path, source: str, check_images: bool
) -> dict[str, int]:
    """Distinct image name -> index (first-appearance order), checked to exist under ``image_root``."""
    image_index: dict[str, int] = {}
    for record in kept:
        image_index.setdefault(record.image, len(image_index))
    if check_images:
        if not image_root.is_dir():
            raise KnowledgeTableError(
                f"image_root {image_root} is not a folder (expected the dataset's images)"
            )
        missing = [name for name in image_index if not (image_root / name).is_file()]
        if missing:
            raise KnowledgeTableError(
                f"{source} names images that do not exist under {image_root} ({_listing(missing)})"
            )
    return image_index


def _class_list(
    heads: list[str], classes: Sequence[str] | None, norm: Callable[[str], str], lowercase: bool
) -> tuple[str, ...]:
    """The class names: the distinct ``heads`` (first appearance) or the normalised ``classes`` given."""
    if classes is None:
        return tuple(dict.fromkeys(heads))
    class_list = tuple(dict.fromkeys(norm(c) for c in classes))
    if len(class_list) != len(classes):
        raise ValueError(f"classes holds duplicates (after lower-casing: {lowercase}): {list(classes)}")
    return class_list


def _index_records(
    kept: list[KnowledgeRecord],
    heads: list[str],
    class_list: tuple[str, ...],
    image_index: dict[str, int],
    norm: Callable[[str], str],
) -> tuple[
    list[int], list[int], list[tuple[int, int, int]], list[dict[int, None]], list[int], tuple[str, ...]
]:
    """Per-record class, image and text indices, per-class image pools and record counts, the string table.

    Returns ``(record_class, record_image, record_text, pools, counts, strings)``; ``record_class`` is
    ``-1`` for a head outside ``class_list``; ``pools[c]`` holds class ``c``'s distinct image indices
    (insertion order); ``strings`` are the distinct texts in first-appearance order.
    """
    class_index = {name: i for i, name in enumerate(class_list)}
    string_index: dict[str, int] = {}

    def intern(text: str) -> int:
        return string_index.setdefault(text, len(string_index))

    record_class, record_image, record_text = [], [], []
    pools: list[dict[int, None]] = [{} for _ in class_list]
    counts = [0] * len(class_list)
    for record, head in zip(kept, heads):
        c = class_index.get(head, -1)
        i = image_index[record.image]
        record_class.append(c)
        record_image.append(i)
        if c >= 0:
            counts[c] += 1
            pools[c][i] = None
        definition = norm(record.def_head) if record.def_head is not None else head
        relation = f"{norm(record.relation)} {norm(record.tail_entity)}"
        record_text.append((intern(head), intern(definition), intern(relation)))
    return record_class, record_image, record_text, pools, counts, tuple(string_index)


def load_knowledge_table(
    records: Path | str | Sequence[KnowledgeRecord],
    image_root: Path | str,
    *,
    image_map: dict[str, str] | None = None,
    classes: Sequence[str] | None = None,
    lowercase: bool = True,
    missing_definition: str = "name",
    check_images: bool = True,
    allow_empty_classes: bool = False,
) -> KnowledgeTable:
    """Build a :class:`KnowledgeTable` from a knowledge file (JSON list, 7 fields) or records.

    Args:
        records: path of a knowledge file in the published flat schema, or ``KnowledgeRecord``s.
        image_root: folder the ``image`` fields are relative to (``slake/imgs``, ``VQA_RAD Image Folder``).
        image_map: optional id -> file name map (BaMCo's VQA-RAD ids, see
            :func:`bamco_fast.knowledge.load_image_map`).
        classes: use this class list (e.g. the training classes, for a validation table) instead of the
            heads of ``records``; heads outside it get class ``-1``. Compared after lower-casing when
            ``lowercase``.
        lowercase: lower-case all texts and heads (published behaviour).
        missing_definition: ``"name"`` (definition text = entity name) or ``"drop"`` for ``def_head: null``.
        check_images: check every distinct image exists under ``image_root`` (before any decoding).
        allow_empty_classes: with ``classes`` given, allow classes that have no record (an evaluation
            table); otherwise a class with no images is an error.

    Raises:
        KnowledgeTableError: no records, images that do not exist (count and the first few), classes
            with no images.
        bamco_fast.data.errors.DataFormatError: a malformed file (wrong fields, not a list).
    """
    if missing_definition not in MISSING_DEFINITION:
        raise ValueError(
            f"missing_definition must be one of {MISSING_DEFINITION}, got {missing_definition!r}"
        )
    image_root = Path(image_root)
    path, items = _read(records, image_map)
    source = f"knowledge file {path}" if path is not None else "records"
    if not items:
        raise KnowledgeTableError(f"{source} holds no records (expected a non-empty JSON list)")
    empty_image = [i for i, r in enumerate(items) if not r.image.strip()]
    if empty_image:
        raise KnowledgeTableError(f"{source}: records with an empty 'image' field ({_listing(empty_image)})")

    def norm(text: str) -> str:
        return text.lower() if lowercase else text

    kept, dropped = _kept_records(items, source, missing_definition)
    image_index = _image_index(kept, image_root, source, check_images)
    heads = [norm(r.head_entity) for r in kept]
    class_list = _class_list(heads, classes, norm, lowercase)
    record_class, record_image, record_text, pools, counts, strings = _index_records(
        kept, heads, class_list, image_index, norm
    )

    empty = [name for name, pool in zip(class_list, pools) if not pool]
    if empty and not allow_empty_classes:
        raise KnowledgeTableError(
            f"{source}: classes with no images ({_listing(empty)}); every class needs at least one record "
            "with an existing image (pass allow_empty_classes=True for an evaluation table)"
        )
    offsets = [0]
    for pool in pools:
        offsets.append(offsets[-1] + len(pool))
    return KnowledgeTable(
        records=tuple(kept),
        image_root=image_root,
        classes=class_list,
        class_counts=torch.tensor(counts, dtype=torch.int64),
        images=tuple(image_index),
        strings=strings,
        record_class=torch.tensor(record_class, dtype=torch.int64),
        record_image=torch.tensor(record_image, dtype=torch.int64),
        record_text=torch.tensor(record_text, dtype=torch.int64).reshape(-1, 3),
        pool_offsets=torch.tensor(offsets, dtype=torch.int64),
        pool_images=torch.tensor([i for pool in pools for i in pool], dtype=torch.int64),
        dropped_no_definition=dropped,
    )
