"""Shared test helpers: locating ../shared/data and writing small synthetic dataset copies."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``$BAMCO_FAST_SHARED_DATA`` or ``<repo>/../shared/data``; skips the test when absent."""
    path = Path(os.environ.get("BAMCO_FAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set BAMCO_FAST_SHARED_DATA to the shared data folder)")
    return path


def shared(*parts: str) -> Path:
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present in this copy of the shared data")
    return path


def png_bytes(value: int) -> bytes:
    """A tiny valid PNG whose content depends on ``value``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4), color=value).save(buffer, format="PNG")
    return buffer.getvalue()


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def make_slake_copy(
    root: Path, entries: list[dict], split: str = "train", images: tuple[str, ...] = ()
) -> Path:
    """A Slake-layout folder with one split file and the given image files."""
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    for name in images:
        target = root / "imgs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_bytes(1))
    write_json(root / f"{split}.json", entries)
    return root


def slake_entry(
    qid: int, img: str, question: str, answer: str, answer_type: str = "OPEN", lang: str = "en"
) -> dict:
    return {
        "img_id": 0,
        "img_name": img,
        "question": question,
        "answer": answer,
        "q_lang": lang,
        "location": "Chest",
        "modality": "CT",
        "answer_type": answer_type,
        "base_type": "vqa",
        "content_type": "Organ",
        "triple": ["vhead", "_", "_"],
        "qid": qid,
    }
