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

from .common import ImageChecker, handle_problem, normalize_answer_type, wrong_text_fields
from .errors import DataFormatError, LayoutError, MissingFileError, MissingSplitError, SkipLog
from .jsonio import read_json
from .record import VQARecord, derive_answer_type

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
    records: list[VQARecord] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or any(k not in item for k in ("image_name", "question", "answer")):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            handle_problem(
                DataFormatError(
                    f"entry {index}: expected image_name, question, answer; got {got}", path=path
                ),
                "malformed entry",
                skip_log,
            )
            continue
        if layout == "official":
            phrase = str(item.get("phrase_type", "")).strip()
            if phrase not in _OFFICIAL_PHRASES["train"] | _OFFICIAL_PHRASES["test"]:
                handle_problem(
                    DataFormatError(f"entry {index}: unknown phrase_type {phrase!r}", path=path),
                    "malformed entry",
                    skip_log,
                )
                continue
            if phrase not in _OFFICIAL_PHRASES[split]:
                continue
        answer = item["answer"]
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)  # the official files hold a few numeric answers (e.g. 4); null is no answer
        wrong = wrong_text_fields({**item, "answer": answer}, ("image_name", "question", "answer"))
        if wrong:
            handle_problem(
                DataFormatError(f"entry {index}: expected string fields, got {wrong}", path=path),
                "malformed entry",
                skip_log,
            )
            continue
        answer = answer.strip()
        extra = {k: item[k] for k in _EXTRA if k in item}
        if "answer_type" in item:
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
        else:
            answer_type = derive_answer_type(answer)
            extra["answer_type_source"] = "derived"
        image_name = item["image_name"]
        if not images.exists(image_name):
            handle_problem(
                images.missing_error(image_name, path, f"entry {index}"), "missing image", skip_log
            )
            continue
        qid = item.get("qid", item.get("hf_index", index))
        records.append(
            VQARecord(
                dataset="vqa-rad",
                split=split,
                qid=str(qid),
                image_name=image_name,
                image_path=images.path_for(image_name),
                question=item["question"],
                answer=answer,
                answer_type=answer_type,
                lang="en",
                extra=extra,
            )
        )
    return records
