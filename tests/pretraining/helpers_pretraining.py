"""Shared helpers: synthetic knowledge files with real image files, and the shared-data locator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared(*parts: str) -> Path:
    """``$BAMCO_FAST_SHARED_DATA`` (or ``<repo>/../shared/data``) joined with ``parts``; skips when absent."""
    base = Path(os.environ.get("BAMCO_FAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not base.is_dir():
        pytest.skip(f"real data not found at {base} (set BAMCO_FAST_SHARED_DATA to the shared data folder)")
    path = base.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present in this copy of the shared data")
    return path


def published_vqa_rad_table():
    """The published VQA-RAD training knowledge file (``bamco_kg/VQARAD``) over the shared VQA-RAD images,
    joined through its image-id map; skips without the shared data."""
    from bamco_fast.knowledge import load_image_map
    from bamco_fast.pretraining import load_knowledge_table

    kg = shared("bamco_kg", "VQARAD")
    return load_knowledge_table(
        kg / "KG_VQARAD_Train.json",
        shared("vqa_rad", "VQA_RAD Image Folder"),
        image_map=load_image_map(kg / "image_id_to_synpic.json"),
    )


def record(image: str, head: str, tail: str = "t", relation: str = "r", definition: str | None = "d") -> dict:
    return {
        "image": image,
        "question": f"q about {head}?",
        "answer": head,
        "head_entity": head,
        "tail_entity": tail,
        "def_head": definition,
        "relation": relation,
    }


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 0) -> Path:
    """A JPEG/PNG with a gradient so crops differ; ``size`` is (width, height)."""
    from PIL import Image

    w, h = size
    ramp = (torch.arange(w)[None, :] * 255 // max(1, w - 1) + value) % 256
    data = ramp.expand(h, w).to(torch.uint8)
    rgb = torch.stack([data, data.flip(1), torch.full_like(data, value % 256)], -1).contiguous()
    image = Image.frombytes("RGB", (w, h), bytes(rgb.numpy().tobytes()))
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG" if mode in ("P", "RGBA") else "JPEG", quality=95)
    return path


def make_knowledge(tmp: Path, rows: list[dict], *, images: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write ``rows`` to ``tmp/kg.json`` and the images they name (default 40x30) under ``tmp/imgs``."""
    names = sorted({r["image"] for r in rows})
    for i, name in enumerate(names):
        write_image(tmp / "imgs" / name, (images or {}).get(name, (40, 30)), value=17 * i)
    path = tmp / "kg.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def small_rows(n_classes: int = 4, images_per_class: int = 3, records_per_image: int = 2) -> list[dict]:
    rows = []
    for c in range(n_classes):
        for i in range(images_per_class):
            for r in range(records_per_image):
                rows.append(
                    record(
                        f"c{c}_{i}.jpg",
                        f"Head{c}",
                        tail=f"tail{c}{r}",
                        relation=f"rel{r}",
                        definition=f"definition of head {c}",
                    )
                )
    return rows
