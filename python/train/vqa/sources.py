"""What the VQA stage reads from a pretraining run folder, and the LLM a config names.

A pretraining run leaves files, not code, for this stage to read: ``config.json`` (its knowledge file,
image folder and image map: the intra-class bank's sources) and ``validation_images.json`` (the images
whose knowledge records it held out). The stages never import each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .config import LLMS, TINY_LLM

__all__ = [
    "VALIDATION_IMAGES",
    "knowledge_source_of_run",
    "pretraining_validation_images",
    "records_seen_in_pretraining",
    "resolve_llm",
]

#: File of a pretraining run listing its validation images (written by the pretraining stage).
VALIDATION_IMAGES = "validation_images.json"


def _run_folders(folder: str | Path) -> tuple[Path, ...]:
    """The pretraining run folder given itself or its ``knowledge_space/``."""
    folder = Path(folder)
    return (folder, folder.parent)


def pretraining_validation_images(folder: str | Path) -> set[str] | None:
    """The images whose knowledge records the pretraining run ``folder`` (or the run holding this
    ``knowledge_space/``) held out of training; ``None`` when the run does not list them."""
    for candidate in _run_folders(folder):
        path = candidate / VALIDATION_IMAGES
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                return {str(name) for name in data["images"]}
            except (ValueError, KeyError, TypeError, OSError):
                return None
    return None


def records_seen_in_pretraining(bank, folder: str | Path) -> int | None:
    """Left-out records of the bank (those of this run's held-out questions) whose image the pretraining run
    ``folder`` trained on; ``None`` when the run does not list its validation images."""
    if not bank.left_out_record_images:
        return 0
    held = pretraining_validation_images(folder)
    if held is None:
        return None
    return sum(1 for image in bank.left_out_record_images if image not in held)


def _local(value: str, run: Path) -> str:
    """A path recorded by a pretraining run: relative ones are relative to the run (else as recorded)."""
    path = Path(value)
    if not path.is_absolute() and (run / path).exists():
        path = run / path
    return str(path.absolute())


def knowledge_source_of_run(folder: str | Path) -> dict[str, str] | None:
    """Training knowledge file, image folder and image map of a pretraining run (``data.train_knowledge``,
    ``data.image_root``, ``data.image_map`` of its ``config.json``); ``None`` when nothing is recorded.

    ``folder`` is the pretraining run folder or its ``knowledge_space/``.
    """
    for candidate in _run_folders(folder):
        path = candidate / "config.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8")).get("data")
        if not isinstance(data, dict):
            continue
        knowledge = data.get("train_knowledge") or data.get("knowledge")
        images = data.get("image_root") or data.get("knowledge_images")
        if knowledge and images:
            image_map = data.get("image_map") or ""
            return {
                "knowledge_file": _local(knowledge, candidate),
                "image_root": _local(images, candidate),
                "image_map": _local(image_map, candidate) if image_map else "",
            }
    return None


def resolve_llm(name: str, run_dir: Path, texts: Sequence[str], *, seed: int = 0, build: bool = True) -> str:
    """A hub name or folder for ``name``: a key of :data:`LLMS`, ``"tiny"`` (built once in ``run_dir``), or as is.

    ``build=False`` only names the tiny LLM's folder (other ranks of a distributed run, which wait for
    rank 0 to build it).
    """
    if name == TINY_LLM:
        folder = Path(run_dir) / "tiny_llm"
        if build and not (folder / "config.json").is_file():
            import transformers

            from bamco_fast.models.tiny_lm import build_tiny_causal_lm

            transformers.utils.logging.disable_progress_bar()
            build_tiny_causal_lm(folder, "llama", list(texts), seed=seed)
        return str(folder.absolute())
    return LLMS.get(name, name)
