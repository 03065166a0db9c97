"""A small real world for end-to-end pretraining runs: a slice of the packaged demo data with tiny towers,
and the ``--set`` options that train on it on CPU."""

from __future__ import annotations

import json
from pathlib import Path


def demo_slice(root: Path, n_train: int, n_val: int) -> dict[str, Path]:
    """Knowledge files holding the first ``n_train`` / ``n_val`` records of the demo's train/validate
    files, and tiny towers (32x32 images, ``embed_dim`` 32) whose vocabulary is the training records' text.

    Returns the paths ``root``, ``train``, ``val`` (the knowledge files), ``images`` (the demo's image
    folder) and ``towers`` (an open_clip folder, ``local-dir:`` loadable).
    """
    from bamco_fast.demo_data import demo_paths
    from bamco_fast.models.tiny import build_tiny_towers

    paths = demo_paths()
    train = json.loads(paths.knowledge["train"].read_text())[:n_train]
    val = json.loads(paths.knowledge["validate"].read_text())[:n_val]
    (root / "train.json").write_text(json.dumps(train))
    (root / "val.json").write_text(json.dumps(val))
    texts = [r[k] or "" for r in train for k in ("head_entity", "def_head", "tail_entity", "relation")]
    towers = build_tiny_towers(root / "towers", texts, image_size=32, embed_dim=32, context_length=32)
    return {"root": root, "train": root / "train.json", "val": root / "val.json", "images": paths.images,
            "towers": towers}  # fmt: skip


def pretrain_sets(data: dict[str, Path], *sets: str) -> list[str]:
    """``--set KEY=VALUE`` arguments of a pretraining run on ``data`` (a :func:`demo_slice`): its files,
    32x32 cached images, the tiny towers, batches of 4, no progress bar or TensorBoard; then ``sets``."""
    base = [
        f"data.train_knowledge={data['train']}",
        f"data.val_knowledge={data['val']}",
        f"data.image_root={data['images']}",
        "data.cache_resolution=32",
        f"model.tower=local-dir:{data['towers']}",
        "model.embed_dim=32",
        "tiny.enabled=false",
        "loop.batch_size=4",
        "loop.progress=false",
        "loop.tensorboard=false",
    ]
    return [arg for s in (*base, *sets) for arg in ("--set", s)]
