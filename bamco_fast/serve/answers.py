"""What the question page does, without the web framework: check uploads, answer, describe the answer.

* :func:`check_image`: an uploaded file must be an image Pillow can read, at most ``max_bytes`` bytes and
  ``max_pixels`` pixels (width x height, read from the header before any decoding); otherwise
  :class:`UploadError` with a message for the page.
* :func:`evaluation_examples`: the run's evaluation images (from its predictions files), each with the
  first question asked about it, offered as examples.
* :class:`Answerer`: answers questions about one image with :func:`bamco_fast.inference.answer_questions`
  (greedy, batched) and describes each answer as HTML: the retrieved entity with a strip of its
  intra-class images, the knowledge text and the time taken.

Every question is answered with the question id ``"0"``, the id ``python -m bamco_fast.predict`` gives a
single question, so the intra-class draw (seeded by the id) and the answer are those of ``predict``,
and a question in a batch gets the answer it gets alone.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Answerer", "UploadError", "UploadLimits", "check_image", "evaluation_examples"]

QID = "0"
_THUMB_STYLE = "width:56px;height:56px;object-fit:cover;margin:0 4px 4px 0;border-radius:3px"


class UploadError(ValueError):
    """An upload that cannot be answered; the message is shown in the page."""


@dataclass(frozen=True)
class UploadLimits:
    """Largest accepted upload: ``max_bytes`` bytes and ``max_pixels`` pixels (width x height)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000


def _size(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 1024:.3g} KB"


def check_image(path: Path | str | None, limits: UploadLimits) -> Path:
    """``path`` when it is an acceptable image (see the module docstring), else :class:`UploadError`."""
    from PIL import Image, UnidentifiedImageError

    if path is None or not str(path).strip():
        raise UploadError("Choose an image first: upload one, or pick one of the evaluation images.")
    path = Path(path)
    if not path.is_file():
        raise UploadError(f"The image {path.name!r} is no longer available; upload it again.")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise UploadError(
            f"The upload is {_size(size)}; images up to {_size(limits.max_bytes)} are accepted."
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise UploadError(
            f"The image is too large to open; images up to {limits.max_pixels / 1e6:.3g} megapixels are accepted."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UploadError(
            f"The upload {path.name!r} is not an image this page can read (PNG, JPEG, BMP, TIFF, GIF, WebP)."
        ) from None
    if width * height > limits.max_pixels:
        raise UploadError(
            f"The image is {width} x {height} = {width * height / 1e6:.3g} megapixels; images up to "
            f"{limits.max_pixels / 1e6:.3g} megapixels are accepted."
        )
    return path


def evaluation_examples(run_dir: Path | str, limit: int = 24) -> list[tuple[str, Path, str]]:
    """Up to ``limit`` distinct evaluation images of the run: ``(label, image file, a question about it)``."""
    from ..evaluate.report_rows import image_files
    from ..metrics import PredictionsError, read_predictions

    out: list[tuple[str, Path, str]] = []
    seen: set[Path] = set()
    for path in sorted(Path(run_dir).glob("predictions_*.jsonl")):
        try:
            rows = read_predictions(path)
        except (PredictionsError, OSError):
            continue
        for row, image in zip(rows, image_files(run_dir, rows)):
            if image is None or image in seen or not image.is_file():
                continue
            seen.add(image)
            question = row.question or ""
            out.append((f"{image.name}: {question}" if question else image.name, image, question))
            if len(out) >= limit:
                return out
    return out


class Answerer:
    """Answers about one image with a loaded run (:class:`~bamco_fast.inference.LoadedRun`).

    Args:
        run: the loaded run.
        limits: upload limits.
        strip_show: how many of the ``K`` drawn intra-class images an answer shows.
    """

    def __init__(self, run, limits: UploadLimits | None = None, *, strip_show: int = 8) -> None:
        self.run = run
        self.limits = limits or UploadLimits()
        self.strip_show = strip_show
        model = run.model
        self.k = 0
        if model.intra_bank is not None and model.config.use_intra_class:
            self.k = int(model.config.num_intra_images or model.knowledge_space.config.num_images)

    def answer(self, image: Path | str | None, questions: Sequence[str]) -> tuple[list, float]:
        """``(answers, seconds)`` for ``questions`` about ``image`` (one batched generation).

        Raises:
            UploadError: a bad image, or no question.
        """
        from ..data.images import ImageDecodeError
        from ..inference import answer_questions

        path = check_image(image, self.limits)
        questions = [q.strip() for q in questions if q and q.strip()]
        if not questions:
            raise UploadError("Type a question first.")
        start = time.perf_counter()
        try:
            answers = answer_questions(self.run, [(path, q, QID) for q in questions])
        except ImageDecodeError as exc:
            raise UploadError(f"The image cannot be decoded: {exc}") from None
        return answers, time.perf_counter() - start

    def knowledge_text(self, question: str) -> tuple[str, str]:
        """``(kind, text)`` the knowledge token embeds for ``question`` (the question, or its entities)."""
        model = self.run.model
        if not model.config.use_knowledge:
            return "none", "(no knowledge token in this run)"
        if model.config.knowledge_input == "entities" and model.entities is not None:
            found = model.entities([question])[0]
            if found and found.strip():
                return "entities", found
            return "question (no entity found)", question
        return "question", question

    def strip_html(self, entity: str | None) -> str:
        """The retrieved entity and a strip of the images drawn for it (or why there is none)."""
        from ..evaluate.report_rows import intra_draw
        from ..evaluate.thumbnails import pixels_thumbnail

        if not entity:
            return "<p>No entity retrieved: this run has no intra-class bank (plain towers).</p>"
        bank = self.run.model.intra_bank
        draw = intra_draw(bank, entity, QID, self.k)
        head = f"<p><b>Retrieved entity:</b> {html.escape(entity)}</p>"
        if draw is None:
            return head + "<p>No intra-class images: this run has no intra-class branch.</p>"
        shown = draw.indices[: self.strip_show].tolist()
        images = "".join(
            f'<img src="{pixels_thumbnail(bank.images[i], 96)}" alt="" style="{_THUMB_STYLE}">' for i in shown
        )
        return (
            f"{head}<div style='display:flex;flex-wrap:wrap'>{images}</div>"
            f"<p style='font-size:12px'>{len(shown)} of the {draw.drawn} images drawn for the intra-class token "
            f"({draw.distinct} distinct, drawn with replacement).</p>"
        )

    def details_html(self, question: str, answer, seconds: float) -> str:
        """HTML describing one answer: entity, intra-class strip, knowledge text, time taken."""
        kind, text = self.knowledge_text(question)
        return (
            f"{self.strip_html(answer.retrieved_entity)}"
            f"<p><b>Knowledge text</b> ({html.escape(kind)}): {html.escape(text)}</p>"
            f"<p style='font-size:12px'>Answered in {seconds:.2f} s on {html.escape(str(self.run.device))}.</p>"
        )
