"""Reader for PathVQA.

Two layouts are supported:

``hf-parquet``  the Hugging Face ``flaviagiammarino/path-vqa`` export (see :mod:`.hf_parquet`);

``json``  one JSON list (or JSON Lines) file per split plus an image folder::

    root/train.json | train.jsonl
    root/validation.json | validate.json | val.json   (and .jsonl)
    root/test.json | test.jsonl
    root/images/...            image paths in the files are relative to root/images (or to root)

  Each object holds ``question``, ``answer`` (strings) and the image under one of ``image``,
  ``image_name``, ``img_name`` or ``image_path``; optional ``answer_type`` (OPEN/CLOSED),
  ``question_type`` (kept in ``extra``) and ``qid``/``id``. Without ``answer_type`` it is derived:
  CLOSED iff the answer is yes/no (PathVQA's own definition).

  Image paths may be written Windows-style: the common JSON dump of the Hugging Face release stores
  ``images\\train\\pathvqa_00003.jpg`` (relative to ``root``). Backslashes are read as folder separators,
  so ``image_name`` is ``images/train/pathvqa_00003.jpg``; each name is looked up under ``root/images``
  first, then under ``root`` (or only under ``image_dir`` when one is given).
"""

from __future__ import annotations

from pathlib import Path

from .common import ImageChecker, pick_file
from .entries import EntryReader
from .errors import DataFormatError, LayoutError, MissingSplitError, SkipLog
from .hf_parquet import has_parquet_layout, read_hf_parquet
from .jsonio import iter_jsonl, read_json
from .record import VQARecord

__all__ = ["PATHVQA_LAYOUTS", "detect_pathvqa_layout", "pathvqa_has_split", "read_pathvqa"]

PATHVQA_LAYOUTS = ("hf-parquet", "json")
_STEMS = {"train": ("train",), "validate": ("validation", "validate", "val"), "test": ("test",)}
_IMAGE_KEYS = ("image", "image_name", "img_name", "image_path")


def _split_file(root: Path, split: str) -> Path | None:
    names = tuple(f"{stem}{ext}" for stem in _STEMS[split] for ext in (".json", ".jsonl"))
    return pick_file(root, names)


def detect_pathvqa_layout(root: Path) -> str:
    root = Path(root)
    if has_parquet_layout(root):
        return "hf-parquet"
    if any(_split_file(root, split) for split in _STEMS):
        return "json"
    raise LayoutError(
        "unknown PathVQA layout: expected Hugging Face parquet files (data/<split>-*.parquet) or "
        "train.json/validation.json/test.json (or .jsonl) with an images/ folder",
        path=root,
    )


def pathvqa_has_split(root: Path, split: str, layout: str = "auto") -> bool:
    from .hf_parquet import find_parquet_files

    layout = detect_pathvqa_layout(root) if layout == "auto" else layout
    if layout == "hf-parquet":
        return bool(find_parquet_files(root, split))
    return _split_file(Path(root), split) is not None


def _load_items(path: Path) -> list[tuple[str, object]]:
    if path.suffix == ".jsonl":
        return [(f"line {n}", item) for n, item in iter_jsonl(path, "PathVQA split file")]
    items = read_json(path, "PathVQA split file")
    if not isinstance(items, list):
        raise DataFormatError(f"expected a JSON list of QA objects, got {type(items).__name__}", path=path)
    return [(f"entry {i}", item) for i, item in enumerate(items)]


def read_pathvqa(
    root: Path,
    split: str,
    *,
    layout: str = "auto",
    image_dir: Path | None = None,
    check_images: bool = True,
    skip_log: SkipLog | None = None,
) -> list[VQARecord]:
    """Read one PathVQA split (``train``, ``validate`` or ``test``).

    For ``hf-parquet``, ``image_dir`` is where images are extracted (default ``root/images``); for
    ``json`` it is where they are read from (default: ``root/images``, then ``root``).
    """
    root = Path(root)
    if split not in _STEMS:
        raise ValueError(f"split must be one of {sorted(_STEMS)}, got {split!r}")
    if layout == "auto":
        layout = detect_pathvqa_layout(root)
    if layout == "hf-parquet":
        return read_hf_parquet(root, split, dataset="pathvqa", extract_dir=image_dir, skip_log=skip_log)
    if layout != "json":
        raise ValueError(f"layout must be one of {('auto', *PATHVQA_LAYOUTS)}, got {layout!r}")
    path = _split_file(root, split)
    if path is None:
        raise MissingSplitError(
            f"PathVQA split {split!r} not found (expected {_STEMS[split][0]}.json or .jsonl)", path=root
        )
    folders = (Path(image_dir),) if image_dir else (root / "images", root)
    reader = EntryReader("pathvqa", split, path, ImageChecker(folders, check=check_images), skip_log)
    records: list[VQARecord] = []
    for index, (where, raw) in enumerate(_load_items(path)):
        key = next((k for k in _IMAGE_KEYS if isinstance(raw, dict) and k in raw), _IMAGE_KEYS[0])
        item = reader.entry(where, raw, ("question", "answer", key))
        if item is None:
            continue
        record = reader.record(
            where,
            item,
            image_key=key,
            qid=item.get("qid", item.get("id", f"{split}-{index}")),
            extra={"question_type": item["question_type"]} if "question_type" in item else None,
        )
        if record is not None:
            records.append(record)
    return records
