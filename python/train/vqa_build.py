"""What the VQA stage reads from a pretraining run, and the LLM a config names.

The run folder's layout and its loading live in the library (:mod:`bamco_fast.inference`), so the
training stage and ``python -m bamco_fast.predict`` rebuild a saved run the same way.

"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .vqa_config import LLMS, TINY_LLM

__all__ = ["knowledge_source_of_run", "pretraining_validation_images", "resolve_llm"]


def pretraining_validation_images(folder: str | Path) -> set[str] | None:
    """The validation images of the pretraining run ``folder`` (or of its ``knowledge_space/``): the images
    whose knowledge records it held out of training. ``None`` when its config or knowledge files cannot
    be read (e.g. they moved)."""
    from .config import config_from_dict
    from .pretrain_config import PretrainConfig
    from .pretrain_data import load_tables

    folder = Path(folder)
    for candidate in (folder, folder.parent):
        path = candidate / "config.json"
        if path.is_file():
            try:
                config = config_from_dict(PretrainConfig, json.loads(path.read_text(encoding="utf-8")))
                return set(load_tables(config).val.images)
            except (ValueError, KeyError, TypeError, OSError):
                return None
    return None


def knowledge_source_of_run(folder: str | Path) -> dict[str, str] | None:
    """Training knowledge file, image folder and image map of a pretraining run (``data.train_knowledge``,
    ``data.image_root``, ``data.image_map`` of its ``config.json``).

    ``folder`` is the pretraining run folder or its ``knowledge_space/``. Relative paths are taken as the
    pretraining run recorded them (relative to the working directory). ``None`` when nothing is recorded.
    """
    folder = Path(folder)
    for candidate in (folder, folder.parent):
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
                "knowledge_file": str(Path(knowledge).absolute()),
                "image_root": str(Path(images).absolute()),
                "image_map": str(Path(image_map).absolute()) if image_map else "",
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
