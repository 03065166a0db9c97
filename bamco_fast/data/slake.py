"""Reader for SLAKE 1.0 in its official layout.

Layout (``root`` is the folder holding the split files)::

    root/train.json          list of QA objects (bilingual, en + zh)
    root/validate.json       (the Hugging Face copy BoKelvin/SLAKE names it validation.json)
    root/test.json
    root/imgs/xmlabN/source.jpg

Each QA object has ``img_id, img_name, question, answer, q_lang, location, modality, answer_type,
base_type, content_type, triple, qid``; ``img_name`` is relative to ``imgs/``.
"""

from __future__ import annotations

from pathlib import Path

from .common import ImageChecker, pick_file
from .entries import EntryReader
from .errors import DataFormatError, LayoutError, MissingSplitError, SkipLog
from .jsonio import read_json
from .record import VQARecord

__all__ = ["SLAKE_SPLIT_FILES", "read_slake", "slake_has_split"]

SLAKE_SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.json",),
    "validate": ("validate.json", "validation.json"),
    "test": ("test.json",),
}
_REQUIRED = ("img_name", "question", "answer", "q_lang", "answer_type")
_EXTRA = ("img_id", "location", "modality", "base_type", "content_type", "triple")


def slake_has_split(root: Path, split: str) -> bool:
    return pick_file(Path(root), SLAKE_SPLIT_FILES[split]) is not None


def read_slake(
    root: Path,
    split: str,
    *,
    lang: str | None = "en",
    check_images: bool = True,
    skip_log: SkipLog | None = None,
) -> list[VQARecord]:
    """Read one Slake split; ``lang=None`` keeps both languages.

    Entries pass the checks of :class:`~bamco_fast.data.entries.EntryReader`.

    ``img_name``, ``question``, ``answer`` and ``q_lang`` must be JSON strings (a ``null`` answer is a
    malformed entry). A ``lang`` that no question of the file has is an error.

    Raises :class:`LayoutError` if ``root`` is not a Slake folder, :class:`MissingFileError` for a
    missing split file or image, :class:`DataFormatError` for a malformed entry (the last two are
    counted in ``skip_log`` instead when one is given).
    """
    root = Path(root)
    if split not in SLAKE_SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SLAKE_SPLIT_FILES)}, got {split!r}")
    if not (root / "imgs").is_dir():
        raise LayoutError("not a Slake 1.0 folder: expected an 'imgs/' folder next to train.json", path=root)
    path = pick_file(root, SLAKE_SPLIT_FILES[split])
    if path is None:
        raise MissingSplitError(
            f"Slake split {split!r} not found (expected one of {list(SLAKE_SPLIT_FILES[split])})", path=root
        )
    items = read_json(path, "Slake split file")
    if not isinstance(items, list):
        raise DataFormatError(f"expected a JSON list of QA objects, got {type(items).__name__}", path=path)
    reader = EntryReader(
        "slake",
        split,
        path,
        ImageChecker(root / "imgs", check=check_images),
        skip_log,
        lang=lang,
    )
    records: list[VQARecord] = []
    for index, raw in enumerate(items):
        where = f"entry {index}"
        item = reader.entry(where, raw, _REQUIRED, text=_REQUIRED[:4])
        if item is None:
            continue
        record = reader.record(
            where,
            item,
            image_key="img_name",
            qid=item.get("qid", index),
            item_lang=item["q_lang"],
            extra={k: item[k] for k in _EXTRA if k in item},
        )
        if record is not None:
            records.append(record)
    reader.check_language()
    return records
