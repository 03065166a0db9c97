"""Build the packaged demo data (a small VQA-RAD subset with its knowledge records) from the full data.

``python -m bamco_fast.demo_data.build --shared ../shared/data`` reads

* BaMCo's published ``bamco_kg/VQARAD/KG_VQARAD_{Train,Test}.json`` (MIT) with
  ``image_id_to_synpic.json`` (BaMCo's generated image ids -> the original ``synpicNNNN.jpg``),
* VQA-RAD's images (``vqa_rad/VQA_RAD Image Folder``, CC0) and its Hugging-Face-order split
  (``vqa_rad/hf_flaviagiammarino_order/{train,test}.json``),

and writes into the demo folder (default: this package's folder)::

    vqa_rad/images/synpicNNNN.jpg     the selected images, longer side <= --size px, JPEG
    vqa_rad/train.json, test.json     their VQA-RAD QA pairs (hf-order layout: hf_index, question, answer, image_name)
    knowledge/train.json              knowledge records (7 fields, image = synpic name) of the training images
    knowledge/validate.json           records of the validation images: the images bamco_fast.data carves
                                      from vqa_rad/train.json (10%, seed 0), so both stages share one split
    knowledge/test.json               KG_VQARAD_Test.json records of the selected images
    manifest.json                     counts, selection settings and a sha256 per file
    README.md, LICENSE.BaMCo          provenance and licences

Selection (deterministic): greedy over the training images of the knowledge file, each step taking the
image that gives the most classes (head entities) a second image, then the most classes a first image
(among classes with at least two images in the full file), ties broken by image name. Everything is
written to a temporary folder first and moved into place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

__all__ = ["build_demo", "main", "select_images"]

DEFAULT_IMAGES = 64
DEFAULT_SIZE = 128
DEFAULT_QUALITY = 85
_KG = Path("bamco_kg/VQARAD")
_RAD = Path("vqa_rad")
_PARTS = ("vqa_rad", "knowledge", "manifest.json", "README.md", "LICENSE.BaMCo")


def select_images(pools: dict[str, set[str]], count: int) -> list[str]:
    """Greedy image choice (module docstring); ``pools`` maps class -> images. Returns sorted names."""
    image_classes: dict[str, list[str]] = defaultdict(list)
    for name, images in pools.items():
        for image in images:
            image_classes[image].append(name)
    candidates = sorted(image_classes)
    if count > len(candidates):
        raise ValueError(f"asked for {count} images, the knowledge file has {len(candidates)}")
    chosen: list[str] = []
    taken: dict[str, int] = defaultdict(int)
    remaining = set(candidates)
    for _ in range(count):
        best, best_key = None, None
        for image in candidates:
            if image not in remaining:
                continue
            second = sum(1 for c in image_classes[image] if taken[c] == 1)
            first = sum(1 for c in image_classes[image] if taken[c] == 0 and len(pools[c]) >= 2)
            key = (second, first)
            if best_key is None or key > best_key:
                best, best_key = image, key
        chosen.append(best)
        remaining.discard(best)
        for c in image_classes[best]:
            taken[c] += 1
    return sorted(chosen)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _save_image(source: Path, target: Path, size: int, quality: int) -> None:
    from PIL import Image

    with Image.open(source) as image:
        image.load()
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        scale = size / max(image.size)
        if scale < 1:
            new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(new, Image.Resampling.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="JPEG", quality=quality, optimize=False, progressive=False)


def _readme(manifest: dict) -> str:
    c = manifest["counts"]
    return f"""# Demo data: a small VQA-RAD subset with BaMCo's knowledge records

Made by `python -m bamco_fast.demo_data.build` (deterministic) from the full VQA-RAD release and
BaMCo's published knowledge file. Load it with `bamco_fast.demo_data` (`demo_root()`, `demo_paths()`).

| part | content |
|---|---|
| `vqa_rad/images/` | {c["images"]} VQA-RAD images (`synpicNNNN.jpg`, original names), longer side <= {manifest["size"]} px, JPEG quality {manifest["quality"]} |
| `vqa_rad/train.json`, `test.json` | the VQA-RAD QA pairs of these images in the Hugging Face `flaviagiammarino/vqa-rad` order and text: {c["vqa_train"]} train, {c["vqa_test"]} test (`load_split("vqa-rad", root, ...)` reads them; it carves `validate` from train: {c["vqa_validate"]} of the train QA, {c["validate_images"]} images) |
| `knowledge/train.json` | {c["kg_train"]} knowledge records (7-field schema) of the {c["train_images"]} training images; {c["classes"]} classes (head entities), {c["classes_2plus"]} with >= 2 images |
| `knowledge/validate.json` | {c["kg_validate"]} records of the {c["validate_images"]} validation images (the same images `load_split` carves for validation) |
| `knowledge/test.json` | {c["kg_test"]} records of `KG_VQARAD_Test.json` on these images (answers of the test split: for matching evaluation only, never as VQA input) |

The images of VQA-RAD's test questions are also training images (VQA-RAD asks several questions
about each picture by design); no (image, question) pair of test is in train.

Image choice: greedy over the {manifest["source_images"]} images of the training knowledge file, each step
taking the image that gives the most classes a second image, then the most classes a first image.

## Provenance and licences

* **VQA-RAD** (Lau et al., "A dataset of clinically generated visual questions and answers about
  radiology images", Scientific Data 2018; osf.io/89kps): images and QA pairs, released under
  **CC0 1.0** (public domain). Images come from MedPix. Question/answer text and row order follow the
  Hugging Face copy `flaviagiammarino/vqa-rad`.
* **Knowledge records**: from BaMCo's published `KSpace/Datasets/VQARAD/KG_VQARAD_Train.json` and
  `KG_VQARAD_Test.json` (github.com/yaziciz/BaMCo; Yazici et al., MICCAI 2025), **MIT licence**,
  Copyright (c) 2025 Ziya Ata Yazici; see `LICENSE.BaMCo`. The only change: BaMCo's generated image ids
  (`12_train.jpg`) are replaced by the original VQA-RAD file names.
"""


def _source_paths(shared: Path) -> dict[str, Path]:
    """The files and folders of ``shared`` the demo is made from (``FileNotFoundError`` lists the missing)."""
    needed = {
        "kg_train": shared / _KG / "KG_VQARAD_Train.json",
        "kg_test": shared / _KG / "KG_VQARAD_Test.json",
        "image_map": shared / _KG / "image_id_to_synpic.json",
        "licence": shared / "bamco_kg/LICENSE.BaMCo",
        "images": shared / _RAD / "VQA_RAD Image Folder",
        "hf_train": shared / _RAD / "hf_flaviagiammarino_order/train.json",
        "hf_test": shared / _RAD / "hf_flaviagiammarino_order/test.json",
    }
    missing = [str(p) for p in needed.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"--shared {shared}: missing {missing}")
    return needed


class _Knowledge(NamedTuple):
    """What :func:`_write_knowledge` wrote: the knowledge records per split (``train``, ``validate``,
    ``test``), the validation image names and the validation QA records."""

    records: dict[str, list]
    val_images: set[str]
    val_records: list


def _write_knowledge(tmp: Path, kg_train: list, kg_test: list, chosen_set: set[str]) -> _Knowledge:
    """Write ``knowledge/{train,validate,test}.json`` under ``tmp``.

    The validation images are those :func:`bamco_fast.data.splits.carve_validation` carves from the
    already written ``tmp/vqa_rad/train.json`` (default fraction and seed).
    """
    from bamco_fast.data.loading import DEFAULT_SEED, DEFAULT_VAL_FRACTION
    from bamco_fast.data.splits import carve_validation
    from bamco_fast.data.vqa_rad import read_vqa_rad

    train_records = read_vqa_rad(tmp / "vqa_rad", "train", layout="hf-order")
    _, val_records = carve_validation(train_records, fraction=DEFAULT_VAL_FRACTION, seed=DEFAULT_SEED)
    val_images = {r.image_name for r in val_records}
    kg = {
        "train": [r for r in kg_train if r.image in chosen_set and r.image not in val_images],
        "validate": [r for r in kg_train if r.image in val_images],
        "test": [r for r in kg_test if r.image in chosen_set],
    }
    for split, records in kg.items():
        _write_json(tmp / "knowledge" / f"{split}.json", [r.to_json() for r in records])
    return _Knowledge(kg, val_images, val_records)


def _manifest(
    size: int, quality: int, kg_train: list, chosen: list[str], vqa: dict, knowledge: _Knowledge
) -> dict:
    """The manifest's settings and counts (the ``sha256`` entry is added once every file is written)."""
    kg, val_images, val_records = knowledge
    train_pools: dict[str, set[str]] = defaultdict(set)
    for r in kg["train"]:
        train_pools[r.head_entity.lower()].add(r.image)
    return {
        "source": "VQA-RAD (CC0 1.0) + BaMCo KG_VQARAD_{Train,Test}.json (MIT)",
        "size": size,
        "quality": quality,
        "source_images": len({r.image for r in kg_train}),
        "counts": {
            "images": len(chosen),
            "train_images": len({r.image for r in kg["train"]}),
            "validate_images": len(val_images),
            "vqa_train": len(vqa["train"]),
            "vqa_test": len(vqa["test"]),
            "vqa_validate": len(val_records),
            "kg_train": len(kg["train"]),
            "kg_validate": len(kg["validate"]),
            "kg_test": len(kg["test"]),
            "classes": len(train_pools),
            "classes_2plus": sum(1 for p in train_pools.values() if len(p) >= 2),
        },
    }


def _finish(tmp: Path, out: Path, manifest: dict) -> None:
    """Write the README and ``manifest.json`` (with a sha256 per file) into ``tmp``, then move every part
    of the demo from ``tmp`` into ``out``, replacing what is there."""
    (tmp / "README.md").write_text(_readme(manifest), encoding="utf-8")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest["sha256"] = {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    _write_json(tmp / "manifest.json", manifest)
    for part in _PARTS:
        target = out / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(tmp / part, target)


def build_demo(
    shared: Path,
    out: Path,
    *,
    images: int = DEFAULT_IMAGES,
    size: int = DEFAULT_SIZE,
    quality: int = DEFAULT_QUALITY,
) -> dict:
    """Build the demo folder ``out`` from the shared data folder ``shared``; returns the manifest."""
    from bamco_fast.knowledge import load_image_map, read_knowledge_file

    shared, out = Path(shared), Path(out)
    needed = _source_paths(shared)
    image_map = load_image_map(needed["image_map"])
    kg_train = read_knowledge_file(needed["kg_train"], image_map=image_map)
    kg_test = read_knowledge_file(needed["kg_test"], image_map=image_map)
    pools: dict[str, set[str]] = defaultdict(set)
    for r in kg_train:
        pools[r.head_entity.lower()].add(r.image)
    chosen = select_images(pools, images)
    chosen_set = set(chosen)

    hf = {split: json.loads(needed[f"hf_{split}"].read_text(encoding="utf-8")) for split in ("train", "test")}
    vqa = {split: [row for row in rows if row["image_name"] in chosen_set] for split, rows in hf.items()}

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        for name in chosen:
            _save_image(needed["images"] / name, tmp / "vqa_rad/images" / name, size, quality)
        for split, rows in vqa.items():
            _write_json(tmp / "vqa_rad" / f"{split}.json", rows)
        knowledge = _write_knowledge(tmp, kg_train, kg_test, chosen_set)
        shutil.copyfile(needed["licence"], tmp / "LICENSE.BaMCo")
        manifest = _manifest(size, quality, kg_train, chosen, vqa, knowledge)
        _finish(tmp, out, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.demo_data.build",
        description="Build the packaged demo data (VQA-RAD subset + BaMCo knowledge records) from the full data.",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/data"),
        help="folder holding vqa_rad/ and bamco_kg/ (default ../shared/data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="demo folder to write (default: the installed package's folder)",
    )
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="number of images")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="longer image side in pixels")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality")
    args = parser.parse_args(argv)
    try:
        manifest = build_demo(args.shared, args.out, images=args.images, size=args.size, quality=args.quality)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum((args.out / name).stat().st_size for name in manifest["sha256"])
    print(json.dumps(manifest["counts"], indent=1))
    print(f"wrote {len(manifest['sha256'])} files, {total / 1e6:.2f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
