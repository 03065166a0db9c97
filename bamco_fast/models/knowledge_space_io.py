"""The self-describing folder of a knowledge space: :meth:`KnowledgeSpace.save` and :meth:`KnowledgeSpace.load`.

A saved folder holds ``knowledge_space.json`` (format, config, class count, tower name, file list),
``classes.json`` (class names in index order), ``model.safetensors`` (every weight except those of frozen
towers, which load from the tower name) and, optionally, ``towers/``: the towers as an open_clip
hub-layout folder, so the run is portable and loads offline. Folders are written atomically (complete or
absent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._folders import read_safetensors, staged_folder
from .knowledge_space_config import KnowledgeSpaceConfig
from .towers import Towers, load_towers, write_hub_folder

if TYPE_CHECKING:
    from .knowledge_space import KnowledgeSpace

__all__ = [
    "CLASSES_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "TOWERS_DIR",
    "WEIGHTS_FILE",
    "load_knowledge_space",
    "save_knowledge_space",
]

FORMAT = "bamco_fast.knowledge_space"
FORMAT_VERSION = 1
META_FILE, CLASSES_FILE, WEIGHTS_FILE, TOWERS_DIR = (
    "knowledge_space.json",
    "classes.json",
    "model.safetensors",
    "towers",
)


def save_knowledge_space(
    model: KnowledgeSpace, folder: Path, *, include_towers: bool = False, overwrite: bool = False
) -> Path:
    """Write ``model`` as a self-describing folder (see the module docstring) and return its absolute path.

    The weights are :meth:`KnowledgeSpace.saved_state_dict` (CPU copies); ``include_towers`` adds the
    ``towers/`` hub-layout folder; ``overwrite`` replaces an existing folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder).absolute()
    with staged_folder(folder, overwrite=overwrite, what="KnowledgeSpace.save") as staging:
        state = model.saved_state_dict()
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
        (staging / CLASSES_FILE).write_text(
            json.dumps(model.class_names, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        if include_towers:
            (staging / TOWERS_DIR).mkdir()
            write_hub_folder(
                staging / TOWERS_DIR,
                folder / TOWERS_DIR,
                model.towers.clip,
                model.towers.tokenizer,
                model.towers.model_config,
            )
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": model.config.to_dict(),
            "num_classes": model.num_classes,
            "tower": model.towers.name,
            "towers_dir": TOWERS_DIR if include_towers else None,
            "classes_file": CLASSES_FILE,
            "weights_file": WEIGHTS_FILE,
            "num_tensors": len(state),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return folder


def _read_meta(folder: Path) -> dict[str, Any]:
    """The folder's ``knowledge_space.json``, checked to be this format and version."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"KnowledgeSpace.load: {str(folder)!r} has no {META_FILE} (not a saved knowledge space)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"KnowledgeSpace.load: {meta_path} has format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}, expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    return meta


def _check_saved_state(
    meta: dict[str, Any], state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Raise ``ValueError`` when the saved tensors' names or shapes differ from the model's ``expected``."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"KnowledgeSpace.load: {meta['weights_file']} does not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    bad = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in expected
        if state[k].shape != expected[k].shape
    ]
    if bad:
        raise ValueError(
            f"KnowledgeSpace.load: tensor shapes differ from the config (name, saved, expected): {bad[:5]}"
        )


def load_knowledge_space(
    cls: type[KnowledgeSpace],
    folder: Path,
    *,
    device: torch.device | str | None = None,
    towers: Towers | None = None,
) -> KnowledgeSpace:
    """Restore a folder written by :func:`save_knowledge_space` as a ``cls`` (towers from ``towers/``
    when included, else from the recorded tower name, unless ``towers`` is given), on ``device``."""

    folder = Path(folder)
    meta = _read_meta(folder)
    config = KnowledgeSpaceConfig.from_dict(meta["config"])
    class_names = json.loads((folder / meta["classes_file"]).read_text(encoding="utf-8"))
    if len(class_names) != meta["num_classes"]:
        raise ValueError(
            f"KnowledgeSpace.load: {meta['classes_file']} lists {len(class_names)} classes, metadata says {meta['num_classes']}"
        )
    if towers is None:
        name = (
            f"local-dir:{(folder / meta['towers_dir']).absolute()}"
            if meta.get("towers_dir")
            else meta["tower"]
        )
        towers = load_towers(name, device=device)
    model = cls(config, class_names, towers=towers)
    state = read_safetensors(folder / meta["weights_file"], "knowledge-space weights")
    _check_saved_state(meta, state, model.saved_state_dict())
    model.load_state_dict(state, strict=False)
    return model.to(device) if device is not None else model
