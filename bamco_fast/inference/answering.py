"""Answer ``(image, question, qid)`` items with a loaded run, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .run_folder import LoadedRun

__all__ = ["answer_questions"]


def answer_questions(
    run: LoadedRun,
    items: Sequence[tuple[Path | str, str, str]],
    *,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> list:
    """Answers (:class:`~bamco_fast.models.vqa.GeneratedAnswer`) for ``(image path, question, qid)`` items.

    Every image is decoded (and checked) before any generation, so a bad file fails fast. Greedy,
    batched generation equals one-at-a-time generation token for token; ``max_new_tokens`` defaults to
    the run's own setting.
    """
    from tqdm.auto import tqdm

    from bamco_fast.data.images import ImageTable

    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
    table = ImageTable([p for p, _, _ in items], run.image_size, run.mean, run.std, progress=progress)
    out = []
    bar = tqdm(total=len(items), desc="answering", unit="q", disable=not progress, leave=False)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = table.normalized(table.rows([p for p, _, _ in chunk])).to(run.device)
        out.extend(
            run.model.generate(
                images, [q for _, q, _ in chunk], qids=[k for _, _, k in chunk], max_new_tokens=max_new_tokens
            )
        )
        bar.update(len(chunk))
    bar.close()
    return out
