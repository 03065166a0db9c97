"""Build a knowledge space's intra-class bank from knowledge records, leaving out held-out questions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from torch import nn

__all__ = ["build_intra_bank", "question_key"]


def question_key(image: str | Path, question: str) -> tuple[str, str]:
    """``(resolved image path, lower-cased question with runs of whitespace collapsed)``."""
    return str(Path(image).resolve()), " ".join(str(question).lower().split())


def build_intra_bank(
    knowledge_space: nn.Module,
    knowledge_file: str | Path,
    image_root: str | Path,
    *,
    image_map: str | Path | None = None,
    seed: int = 0,
    sampling: str = "question",
    exclude_questions: Collection[Sequence[str]] = (),
):
    """The :class:`~bamco_fast.models.retrieval.IntraClassBank` of ``knowledge_space``'s classes.

    Each class's pool is the images of its knowledge records (``(N, 3, h, w)`` uint8 at the space's
    ``intra_image_size``). ``exclude_questions``: ``(image path, question)`` pairs whose records are left
    out. A VQA run passes its validation and evaluation questions, so the bank holds the records of
    training questions only: a record's head entity often comes from its answer, so a pool holding an
    image through a held-out question's record would encode that answer. (An image also asked about in
    training, as most VQA-RAD test images are, stays in the bank through its training records.)
    Questions match case- and whitespace-insensitively. A class left with no image is dropped (it cannot
    be retrieved). The bank records ``left_out_records`` (count), ``left_out_images`` (images no longer in
    any pool), ``left_out_record_images`` (the image of each left-out record) and ``dropped_classes``.

    Raises:
        ValueError: a class of the space has no record in ``knowledge_file``, or nothing is left.
    """
    from bamco_fast.knowledge.published import read_knowledge_file
    from bamco_fast.pretraining.records import load_knowledge_table

    from .retrieval import IntraClassBank

    mapping = None
    if image_map:
        from bamco_fast.knowledge import load_image_map

        mapping = load_image_map(image_map)
    classes = list(knowledge_space.class_names)
    root = Path(image_root)
    records = read_knowledge_file(Path(knowledge_file), image_map=mapping)
    heads = {r.head_entity.lower() for r in records}
    missing = [c for c in classes if c.lower() not in heads]
    if missing:
        raise ValueError(
            f"{knowledge_file}: {len(missing)} of the knowledge space's {len(classes)} classes have no record "
            f"there (e.g. {missing[:3]}); the intra-class bank needs the knowledge file the space was trained on"
        )
    held = {question_key(image, question) for image, question in exclude_questions}
    is_held = [question_key(root / r.image, r.question) in held for r in records]
    kept = [r for r, h in zip(records, is_held) if not h]
    left_out = [r.image for r, h in zip(records, is_held) if h]
    if not kept:
        raise ValueError(
            f"{knowledge_file}: every record of the intra-class bank comes from a validation or evaluation question"
        )
    table = load_knowledge_table(kept, image_root, classes=classes, allow_empty_classes=True)
    pools: dict[str, list[Path]] = {}
    names: list[str] = []  # the knowledge space's spelling (the table may lower-case)
    dropped: list[str] = []
    for i, key in enumerate(table.classes):
        paths = [root / image for image in table.pool(i)]
        if paths:
            pools[key] = paths
            names.append(classes[i])
        else:
            dropped.append(classes[i])
    if not pools:
        raise ValueError(
            f"{knowledge_file}: every class's images come only from validation or evaluation questions"
        )
    towers = knowledge_space.towers
    size = int(getattr(knowledge_space.config, "intra_image_size", 84))
    bank = IntraClassBank.from_paths(
        pools, image_size=size, mean=towers.image_mean, std=towers.image_std, seed=seed, sampling=sampling
    )
    bank.class_names = names
    bank.left_out_records = len(left_out)
    bank.left_out_record_images = left_out
    bank.left_out_images = len(set(left_out) - {r.image for r in kept})
    bank.dropped_classes = dropped
    return bank
