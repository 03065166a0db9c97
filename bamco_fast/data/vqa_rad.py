"""Reader for VQA-RAD in the three file layouts in use.

``official``  (the OSF release)::

    root/VQA_RAD Dataset Public.json     2248 QA objects; phrase_type freeform|para -> train,
                                         test_freeform|test_para -> test
    root/VQA_RAD Image Folder/synpicNNNN.jpg

``mevf``  (the MEVF ``data_RAD`` split, used by MEVF/MMQ/PubMedCLIP)::

    root/trainset.json, root/testset.json   QA objects with image_name, question, answer, answer_type
    images in root/images/ (MEVF) or a 'VQA_RAD Image Folder' next to root

``hf-order``  (row order and text of the Hugging Face ``flaviagiammarino/vqa-rad`` copy, with the
original image file name recovered)::

    root/train.json, root/test.json         objects with hf_index, question, answer, image_name

The Hugging Face parquet files themselves (image bytes inside) are read by :mod:`.hf_parquet`.
VQA-RAD has no validation split; :func:`bamco_fast.data.load_split` carves one from train.
"""

from __future__ import annotations

from pathlib import Path

from .common import ImageChecker
from .entries import EntryReader
from .errors import DataFormatError, LayoutError, MissingFileError, MissingSplitError, SkipLog
from .jsonio import read_json
from .record import VQARecord

__all__ = ["OFFICIAL_JSON", "VQA_RAD_LAYOUTS", "detect_vqa_rad_layout", "find_vqa_rad_images", "read_vqa_rad"]

OFFICIAL_JSON = "VQA_RAD Dataset Public.json"
OFFICIAL_IMAGES = "VQA_RAD Image Folder"
VQA_RAD_LAYOUTS = ("official", "mevf", "hf-order")
_SPLIT_FILES = {
    "mevf": {"train": "trainset.json", "test": "testset.json"},
    "hf-order": {"train": "train.json", "test": "test.json"},
}
_OFFICIAL_PHRASES = {"train": {"freeform", "para"}, "test": {"test_freeform", "test_para"}}
_EXTRA = ("phrase_type", "question_type", "image_organ", "qid_linked_id", "evaluation", "hf_index")


def detect_vqa_rad_layout(root: Path) -> str:
    """Return the layout of ``root`` or raise :class:`LayoutError` listing what was looked for."""
    root = Path(root)
    if (root / OFFICIAL_JSON).is_file():
        return "official"
    if (root / "trainset.json").is_file() or (root / "testset.json").is_file():
        return "mevf"
    if (root / "train.json").is_file() or (root / "test.json").is_file():
        return "hf-order"
    raise LayoutError(
        f"unknown VQA-RAD layout: expected {OFFICIAL_JSON!r} (official), trainset.json/testset.json (MEVF) "
        "or train.json/test.json (hf-order) in this folder; for Hugging Face parquet files use layout hf-parquet",
        path=root,
    )


def find_vqa_rad_images(root: Path) -> Path:
    """The image folder of a VQA-RAD copy: ``images/`` or ``VQA_RAD Image Folder/`` in root or its parent."""
    root = Path(root)
    candidates = [
        root / OFFICIAL_IMAGES,
        root / "images",
        root.parent / OFFICIAL_IMAGES,
        root.parent / "images",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MissingFileError(
        f"no VQA-RAD image folder found (looked for {[str(c) for c in candidates]}); pass image_dir",
        path=root,
    )


def _in_split(reader: EntryReader, where: str, item: dict, layout: str, split: str) -> bool:
    """Whether an entry of the official file belongs to ``split`` (by its ``phrase_type``); every entry
    of the other layouts does. An unknown phrase type is a malformed entry."""
    if layout != "official":
        return True
    phrase = str(item.get("phrase_type", "")).strip()
    if phrase not in _OFFICIAL_PHRASES["train"] | _OFFICIAL_PHRASES["test"]:
        reader.malformed(where, f"unknown phrase_type {phrase!r}")
        return False
    return phrase in _OFFICIAL_PHRASES[split]


def read_vqa_rad(
    root: Path,
    split: str,
    *,
    layout: str = "auto",
    image_dir: Path | None = None,
    check_images: bool = True,
    skip_log: SkipLog | None = None,
) -> list[VQARecord]:
    """Read the ``train`` or ``test`` split of a VQA-RAD copy in ``layout`` (``auto`` detects it)."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"VQA-RAD files hold only 'train' and 'test' splits, got {split!r}")
    if layout == "auto":
        layout = detect_vqa_rad_layout(root)
    if layout not in VQA_RAD_LAYOUTS:
        raise ValueError(f"layout must be one of {('auto', *VQA_RAD_LAYOUTS)}, got {layout!r}")
    if layout == "official":
        path = root / OFFICIAL_JSON
    else:
        path = root / _SPLIT_FILES[layout][split]
        if not path.is_file():
            raise MissingSplitError(f"VQA-RAD {layout} split file for {split!r} not found", path=path)
    items = read_json(path, "VQA-RAD file")
    if not isinstance(items, list):
        raise DataFormatError(f"expected a JSON list of QA objects, got {type(items).__name__}", path=path)
    images = ImageChecker(Path(image_dir) if image_dir else find_vqa_rad_images(root), check=check_images)
    reader = EntryReader("vqa-rad", split, path, images, skip_log)
    records: list[VQARecord] = []
    for index, raw in enumerate(items):
        where = f"entry {index}"
        if (
            isinstance(raw, dict)
            and isinstance(raw.get("answer"), (int, float))
            and not isinstance(raw["answer"], bool)
        ):
            raw = {
                **raw,
                "answer": str(raw["answer"]),
            }  # the official files hold a few numeric answers (e.g. 4)
        item = reader.entry(where, raw, ("image_name", "question", "answer"))
        if item is None or not _in_split(reader, where, item, layout, split):
            continue
        record = reader.record(
            where,
            item,
            image_key="image_name",
            qid=item.get("qid", item.get("hf_index", index)),
            extra={k: item[k] for k in _EXTRA if k in item},
        )
        if record is not None:
            records.append(record)
    return records
