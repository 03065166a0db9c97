"""The demo data shipped inside the package: a small VQA-RAD subset with BaMCo's knowledge records.

Layout under :func:`demo_root` (details, counts and licences in its ``README.md``)::

    vqa_rad/images/synpicNNNN.jpg       VQA-RAD images (CC0), downscaled
    vqa_rad/train.json, test.json       their QA pairs, hf-order layout (bamco_fast.data.load_split reads them)
    knowledge/train.json                knowledge records of the training images (BaMCo's KG, MIT)
    knowledge/validate.json             records of the validation images (the images load_split carves)
    knowledge/test.json                 BaMCo's test-split records of these images (matching evaluation only)
    manifest.json, README.md, LICENSE.BaMCo

Example::

    from bamco_fast.demo_data import demo_paths
    from bamco_fast.pretraining import load_knowledge_table

    paths = demo_paths()
    table = load_knowledge_table(paths.knowledge["train"], paths.images)

Rebuild it with ``python -m bamco_fast.demo_data.build --shared ../shared/data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoPaths", "demo_manifest", "demo_paths", "demo_root"]

_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DemoPaths:
    """Paths of the demo data.

    Attributes:
        root: the demo folder.
        vqa_root: VQA-RAD copy in the hf-order layout (``load_split("vqa-rad", vqa_root, split)``).
        images: image folder (the knowledge records' ``image`` names are relative to it).
        knowledge: ``{"train", "validate", "test"}`` -> knowledge file.
    """

    root: Path
    vqa_root: Path
    images: Path
    knowledge: dict[str, Path]


def demo_root() -> Path:
    """Folder of the packaged demo data; raises ``FileNotFoundError`` naming what is missing."""
    missing = [
        p for p in ("vqa_rad/images", "knowledge/train.json", "manifest.json") if not (_ROOT / p).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"demo data incomplete in {_ROOT}: missing {missing}; rebuild it with "
            "`python -m bamco_fast.demo_data.build --shared ../shared/data`"
        )
    return _ROOT


def demo_paths() -> DemoPaths:
    """Every path of the demo data (see :class:`DemoPaths`)."""
    root = demo_root()
    return DemoPaths(
        root=root,
        vqa_root=root / "vqa_rad",
        images=root / "vqa_rad" / "images",
        knowledge={split: root / "knowledge" / f"{split}.json" for split in ("train", "validate", "test")},
    )


def demo_manifest() -> dict:
    """``manifest.json``: counts, build settings and a sha256 per file."""
    return json.loads((demo_root() / "manifest.json").read_text(encoding="utf-8"))
