"""The per-question content of a run's HTML report: verdicts, image files, knowledge text, intra-class draw.

* :func:`question_verdicts`: one question under every per-question rule of :mod:`bamco_fast.metrics`
  (:func:`bamco_fast.metrics.protocols.question_verdicts`).
* :func:`image_files`: each prediction row's image file: the row's ``image`` field (written by the
  VQA stage), else the dataset reader the run used (``config.json``: ``data.dataset``, ``data.root``),
  looked up by ``image_name``.
* :func:`knowledge_text`: the text the knowledge token embedded: the question, or with
  ``model.knowledge_input=entities`` the row's ``question_entities`` (the question when none was found).
* :func:`intra_draw`: the ``K`` bank images drawn for a question, reproduced from the bank's seeded draw
  (:meth:`~bamco_fast.models.retrieval.IntraClassBank.sample_indices` keyed by the question id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..metrics.predictions import Prediction
from ..metrics.protocols import question_verdicts

__all__ = ["IntraDraw", "image_files", "intra_draw", "knowledge_text", "question_verdicts"]


def knowledge_text(row: Prediction) -> tuple[str, str]:
    """``(kind, text)``: ``("entities", names)`` for a row with ``question_entities`` that found some,
    ``("question", question)`` otherwise (what the model embedded, as :class:`~bamco_fast.models.VQAModel`
    falls back to the question when no entity is found)."""
    found = row.extra.get("question_entities")
    if isinstance(found, str) and found.strip():
        return "entities", found
    kind = "question (no entity found)" if "question_entities" in row.extra else "question"
    return kind, row.question or ""


def _dataset_files(run_dir: Path, rows: Sequence[Prediction]) -> dict[str, Path]:
    """``image_name -> file`` from the dataset reader of the run's ``config.json`` (empty when unreadable)."""
    from ..data import load_split

    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["data"]
        dataset, root = data["dataset"], data.get("root", "")
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if dataset == "demo":
        from ..demo_data import demo_paths

        dataset, root = "vqa-rad", demo_paths().vqa_root
    found: dict[str, Path] = {}
    splits = {str(r.extra["split"]) for r in rows if r.extra.get("split")} | {"train"}
    for split in sorted(splits):
        try:
            records = load_split(
                dataset,
                root,
                split,
                layout=data.get("layout", "auto"),
                lang=None,
                val_fraction=data.get("val_fraction", 0.1),
                seed=data.get("split_seed", 0),
                check_images=False,
            )
        except (ValueError, OSError):  # a split this copy does not ship (carved by the run)
            continue
        for record in records:
            found.setdefault(record.image_name, Path(record.image_path))
    return found


def image_files(run_dir: Path | str, rows: Sequence[Prediction]) -> list[Path | None]:
    """The image file of each row (``None`` where none can be found; see the module docstring)."""
    run_dir = Path(run_dir)
    out: list[Path | None] = [Path(r.extra["image"]) if r.extra.get("image") else None for r in rows]
    if all(path is not None for path in out):
        return out
    by_name = _dataset_files(run_dir, rows)
    return [
        path if path is not None else by_name.get(str(row.extra.get("image_name", "")))
        for path, row in zip(out, rows)
    ]


@dataclass(frozen=True)
class IntraDraw:
    """The intra-class images drawn for one question: ``indices`` ``(K,)`` int64 into ``bank.images``
    (with replacement, in draw order) of class ``entity``."""

    entity: str
    indices: np.ndarray

    @property
    def drawn(self) -> int:
        return int(self.indices.size)

    @property
    def distinct(self) -> int:
        return int(np.unique(self.indices).size)


def intra_draw(bank, entity: str | None, qid: str, k: int) -> IntraDraw | None:
    """The seeded draw of ``k`` images of ``entity`` for question ``qid`` (``None`` without a bank, an
    entity, or when the entity is not one of the bank's classes)."""
    if bank is None or not entity or entity not in bank.class_names or k < 1:
        return None
    return IntraDraw(entity, bank.sample_indices(bank.class_names.index(entity), str(qid), k))
