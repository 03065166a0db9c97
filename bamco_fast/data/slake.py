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

from .common import ImageChecker, handle_problem, normalize_answer_type, pick_file, wrong_text_fields
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
    images = ImageChecker(root / "imgs", check=check_images)
    records: list[VQARecord] = []
    languages: set[str] = set()
    in_lang = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict) or any(k not in item for k in _REQUIRED):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            handle_problem(
                DataFormatError(
                    f"entry {index}: expected an object with {list(_REQUIRED)}, got {got}", path=path
                ),
                "malformed entry",
                skip_log,
            )
            continue
        wrong = wrong_text_fields(item, ("img_name", "question", "answer", "q_lang"))
        if wrong:
            handle_problem(
                DataFormatError(f"entry {index}: expected string fields, got {wrong}", path=path),
                "malformed entry",
                skip_log,
            )
            continue
        answer_type = normalize_answer_type(item["answer_type"])
        if answer_type is None:
            handle_problem(
                DataFormatError(
                    f"entry {index}: answer_type must be OPEN or CLOSED, got {item['answer_type']!r}",
                    path=path,
                ),
                "malformed entry",
                skip_log,
            )
            continue
        languages.add(item["q_lang"])
        if lang is not None and item["q_lang"] != lang:
            continue
        in_lang += 1
        image_name = item["img_name"]
        if not images.exists(image_name):
            handle_problem(
                images.missing_error(image_name, path, f"entry {index}"), "missing image", skip_log
            )
            continue
        records.append(
            VQARecord(
                dataset="slake",
                split=split,
                qid=str(item.get("qid", index)),
                image_name=image_name,
                image_path=images.path_for(image_name),
                question=item["question"],
                answer=item["answer"].strip(),
                answer_type=answer_type,
                lang=item["q_lang"],
                extra={k: item[k] for k in _EXTRA if k in item},
            )
        )
    if lang is not None and languages and not in_lang:
        raise DataFormatError(
            f"no question in language {lang!r} (q_lang values in the file: {sorted(languages)})", path=path
        )
    return records
