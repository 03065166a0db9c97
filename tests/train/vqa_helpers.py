"""Helpers of the VQA stage tests: the shared real data, tiny Slake-layout copies, tiny models."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data(*parts: str) -> Path:
    """``$BAMCO_FAST_SHARED_DATA/parts`` (default ``<repo>/../shared/data``); skips the test when absent."""
    base = Path(os.environ.get("BAMCO_FAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    path = base.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set BAMCO_FAST_SHARED_DATA to the shared data folder)")
    return path


def png_bytes(value: int, size: int = 8) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color=(value, 255 - value, value // 2)).save(buffer, format="PNG")
    return buffer.getvalue()


def slake_item(qid: int, img: str, question: str, answer: str, answer_type: str = "OPEN") -> dict:
    return {
        "qid": qid,
        "img_id": 0,
        "img_name": img,
        "question": question,
        "answer": answer,
        "q_lang": "en",
        "answer_type": answer_type,
        "location": "Chest",
        "modality": "CT",
        "base_type": "vqa",
        "content_type": "Organ",
        "triple": ["vhead", "_", "_"],
    }


def write_slake_copy(root: Path, splits: dict[str, list[dict]]) -> Path:
    """A Slake-layout folder: ``<split>.json`` files and one small PNG per image named in them."""
    for items in splits.values():
        for item in items:
            target = root / "imgs" / item["img_name"]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(png_bytes(len(str(target)) * 7 % 256))
    for split, items in splits.items():
        (root / f"{split}.json").write_text(json.dumps(items), encoding="utf-8")
    return root


def tiny_knowledge_space(folder: Path, towers_dir: Path, class_names, *, texts=()) -> Path:
    """A saved knowledge space with tiny towers (built once in ``towers_dir``) and random heads.

    ``num_images=64, intra_image_size=32`` is the cheapest intra-class encoder the 5 halvings allow.
    """
    from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
    from bamco_fast.models.tiny import build_tiny_towers
    from bamco_fast.models.towers import load_towers

    if not towers_dir.exists():
        build_tiny_towers(towers_dir, [*class_names, *texts, "what organ is shown"], image_size=64)
    name = f"local-dir:{towers_dir}"
    towers = load_towers(name)
    config = KnowledgeSpaceConfig(
        tower=name, embed_dim=towers.embed_dim, num_images=64, intra_image_size=32, feature_size=4
    )
    KnowledgeSpace(config, list(class_names), towers).save(folder)
    return folder


def tiny_run_config(out: Path, preset_name: str, *sets: str):
    """A CPU-sized VQA config: the ``*-tiny`` preset, no progress bars, few bootstrap resamples."""
    from bamco_fast.train.core.config import apply_overrides, parse_set
    from bamco_fast.train.vqa.config import PRESETS

    base = [
        f"out={out}",
        "loop.progress=false",
        "loop.tensorboard=false",
        "eval.n_boot=20",
        "loop.batch_size=16",
    ]
    return apply_overrides(PRESETS[preset_name](), parse_set([*base, *sets]))


def slake_knowledge_space(base: Path) -> tuple[Path, Path, Path]:
    """BaMCo's Slake training records, Slake's images and a tiny knowledge space of their classes saved
    in ``base/ks`` (towers in ``base/towers``): ``(knowledge file, image folder, knowledge-space folder)``."""
    from bamco_fast.pretraining.records import load_knowledge_table

    kg = shared_data("bamco_kg", "Slake1.0", "KG_Slake_Train.json")
    images = shared_data("slake", "imgs")
    classes = load_knowledge_table(kg, images).classes
    return kg, images, tiny_knowledge_space(base / "ks", base / "towers", classes)


_RUNS: dict[str, tuple[Path, object]] = {}


def trained_slake_run() -> tuple[Path, object, Path]:
    """One short run on Slake train (evaluated on Slake validate), built once per test session.

    Returns ``(run folder, its config, its knowledge-space folder)``; the folder is removed at exit.
    """
    if "slake" not in _RUNS:
        import atexit
        import shutil
        import tempfile

        import torch

        from bamco_fast.train.core.entry import run_new
        from bamco_fast.train.vqa import STAGE

        base = Path(tempfile.mkdtemp(prefix="bamco_vqa_slake_"))
        atexit.register(shutil.rmtree, base, True)
        kg, images, ks = slake_knowledge_space(base)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            config = tiny_run_config(
                base / "run",
                "slake-tiny",
                f"model.knowledge_space={ks}",
                f"data.root={shared_data('slake')}",
                f"data.knowledge={kg}",
                f"data.knowledge_images={images}",
                "data.max_train=160",
                "data.max_validate=32",
                "data.max_evaluate=48",
                "loop.epochs=2",
            )
            assert run_new(STAGE, config) == 0
        finally:
            torch.set_num_threads(threads)
        _RUNS["slake"] = (base / "run", config, ks)
    return _RUNS["slake"]


def run_config(config) -> int:
    """Train a VQA config as a new run (as the command line would, without parsing flags)."""
    from bamco_fast.train.core.entry import run_new
    from bamco_fast.train.vqa import STAGE

    return run_new(STAGE, config)


def vqa_main(args: list[str]) -> int:
    """``python -m bamco_fast.train vqa ARGS`` in this process."""
    from bamco_fast.train.cli import main

    return main(["vqa", *args])
