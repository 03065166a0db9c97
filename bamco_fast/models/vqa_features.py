"""What the frozen parts of the VQA model compute for a batch, and a cache of it over a training set.

For each question the frozen parts give (:func:`frozen_features`): the ViT patch tokens of its image
``(gh*gw, patch_width)``, the knowledge space's text embedding of its knowledge input ``(D,)``, the class
retrieved for its image (an index into the intra-class bank) and the frozen intra-class encoder's
embedding of the stack drawn for it ``(D,)``. None of these depend on trainable weights, and the draw is
seeded by the question id, so they are the same in every epoch: a :class:`FrozenFeatureTable` holds them
for a training set (the image features once per distinct image), computed once before training
(:func:`frozen_feature_table`), and ``select`` gathers a batch's :class:`FrozenFeatures` instead of
running the ViT, the text tower and the intra-class encoder every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from typing_extensions import TypedDict

    class FrozenFeatureOptions(TypedDict, total=False):
        """The keywords of :func:`frozen_features` (for ``**options: Unpack[FrozenFeatureOptions]``)."""

        qids: Sequence[str] | None
        knowledge_texts: Sequence[str] | None
        intra_stacks: torch.Tensor | None
        report_retrieval: bool


__all__ = ["FrozenFeatureTable", "FrozenFeatures", "frozen_feature_table", "frozen_features"]


@dataclass
class FrozenFeatures:
    """Frozen features of ``B`` questions (a field is ``None`` when its branch is off).

    Attributes:
        patches: ``(B, gh*gw, patch_width)`` ViT patch tokens (image branch).
        knowledge: ``(B, D)`` text embeddings of the knowledge inputs (knowledge branch).
        intra: ``(B, D)`` intra-class embeddings (intra-class branch).
        classes: ``(B,)`` int64 retrieved class indices (``-1``: no retrieval).
    """

    patches: torch.Tensor | None
    knowledge: torch.Tensor | None
    intra: torch.Tensor | None
    classes: torch.Tensor

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def _map(self, fn) -> FrozenFeatures:
        return FrozenFeatures(
            **{f.name: None if (v := getattr(self, f.name)) is None else fn(v) for f in fields(self)}
        )

    def select(self, index: torch.Tensor | Sequence[int]) -> FrozenFeatures:
        """The questions at ``index`` (in that order)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t[index.to(t.device)])

    def to(self, device: torch.device | str) -> FrozenFeatures:
        return self._map(lambda t: t.to(device))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self) if getattr(self, f.name) is not None)


def _knowledge_texts(model, questions: Sequence[str], knowledge_texts: Sequence[str] | None) -> list[str]:
    texts = list(questions)
    if model.config.knowledge_input != "entities":
        return texts
    if knowledge_texts is None and model.entities is not None:
        knowledge_texts = model.entities(texts)
    if knowledge_texts is None or len(knowledge_texts) != len(texts):
        got = None if knowledge_texts is None else f"{len(knowledge_texts)} texts"
        raise ValueError(
            f"knowledge_texts: knowledge_input='entities' needs one entity text per question "
            f"({len(texts)}), got {got}; pass knowledge_texts= or give the model an EntityTexts"
        )
    return [e if e and e.strip() else q for e, q in zip(knowledge_texts, texts)]


def _check_images(images: torch.Tensor | None, batch: int) -> None:
    if images is None or images.dim() != 4 or images.shape[0] != batch:
        got = None if images is None else tuple(images.shape)
        raise ValueError(f"images: expected a ({batch}, 3, S, S) float tensor, got {got}")


def _image_parts(model, images: torch.Tensor, *, retrieve: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """ViT patch tokens (image branch) and retrieved class indices (``-1`` without retrieval) of images."""
    c, ks, bank = model.config, model.knowledge_space, model.intra_bank
    images = images.to(ks.device, torch.float32)
    patches = ks.patch_tokens(images, positional=c.patch_positional) if c.use_image else None
    classes = torch.full((images.shape[0],), -1, dtype=torch.long)
    if bank is not None and retrieve:
        classes = bank.retrieve(ks.encode_image(images)).cpu()
    return patches, classes


def _intra(model, classes: torch.Tensor, qids: Sequence[str] | None) -> torch.Tensor:
    c, ks, bank = model.config, model.knowledge_space, model.intra_bank
    if bank is None:
        raise ValueError("intra_bank: the intra-class branch needs a bank or explicit intra_stacks")
    batch = int(classes.shape[0])
    if bank.sampling == "class" and qids is None:
        qids = [""] * batch  # the draw does not depend on the question
    if qids is None or len(qids) != batch:
        raise ValueError(f"qids: expected {batch} question ids for seeded retrieval, got {qids!r}")
    k = c.num_intra_images or int(ks.config.num_images)
    return model.intra_embeddings(classes, [str(q) for q in qids], k)


@torch.no_grad()
def frozen_features(
    model,
    images: torch.Tensor | None,
    questions: Sequence[str],
    *,
    qids: Sequence[str] | None = None,
    knowledge_texts: Sequence[str] | None = None,
    intra_stacks: torch.Tensor | None = None,
    report_retrieval: bool = True,
) -> FrozenFeatures:
    """Run the frozen parts of ``model`` (a :class:`~bamco_fast.models.vqa.VQAModel`) on a batch.

    Images ``(B, 3, S, S)`` are normalised floats as the towers expect. ``intra_stacks`` ``(B, K, 3, h, w)``
    (normalised float) replace the bank's draw. Retrieval runs when the draw needs it or
    ``report_retrieval``.
    """
    c, ks = model.config, model.knowledge_space
    batch = len(questions)
    draw = c.use_intra_class and intra_stacks is None
    patches, classes = None, torch.full((batch,), -1, dtype=torch.long)
    if c.use_image or draw or images is not None:
        _check_images(images, batch)
        patches, classes = _image_parts(model, images, retrieve=draw or report_retrieval)
    knowledge = (
        ks.encode_text(_knowledge_texts(model, questions, knowledge_texts)) if c.use_knowledge else None
    )
    intra = None
    if intra_stacks is not None and c.use_intra_class:
        intra = ks.encode_intra_class(intra_stacks.to(ks.device, torch.float32))
    elif draw:
        intra = _intra(model, classes, qids)
    return FrozenFeatures(patches, knowledge, intra, classes)


@dataclass
class FrozenFeatureTable:
    """Frozen features of ``N`` questions, the image features stored once per distinct image.

    Attributes:
        patches: ``(M, gh*gw, patch_width)`` patch tokens of the ``M`` distinct images (image branch).
        image_rows: ``(N,)`` int64, question -> its image's row of ``patches`` and ``image_classes``.
        image_classes: ``(M,)`` int64 class retrieved for each image (``-1``: no retrieval).
        knowledge: ``(N, D)`` knowledge embeddings; ``intra``: ``(N, D)`` intra-class embeddings.
    """

    patches: torch.Tensor | None
    image_rows: torch.Tensor
    image_classes: torch.Tensor
    knowledge: torch.Tensor | None
    intra: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.image_rows.shape[0])

    def select(self, index: torch.Tensor | Sequence[int]) -> FrozenFeatures:
        """The :class:`FrozenFeatures` of the questions at ``index`` (in that order)."""
        index = torch.as_tensor(index, dtype=torch.long)
        rows = self.image_rows[index]

        def pick(t: torch.Tensor | None, at: torch.Tensor) -> torch.Tensor | None:
            return None if t is None else t[at.to(t.device)]

        return FrozenFeatures(
            pick(self.patches, rows),
            pick(self.knowledge, index),
            pick(self.intra, index),
            self.image_classes[rows],
        )

    @property
    def nbytes(self) -> int:
        parts = (self.patches, self.image_rows, self.image_classes, self.knowledge, self.intra)
        return sum(t.nbytes for t in parts if t is not None)


@torch.no_grad()
def frozen_feature_table(
    model,
    image_keys: Sequence[str],
    load_images: Callable[[Sequence[str]], torch.Tensor],
    questions: Sequence[str],
    qids: Sequence[str],
    *,
    batch_size: int = 32,
    progress: bool = False,
) -> FrozenFeatureTable:
    """The :class:`FrozenFeatureTable` of ``N`` questions about the images ``image_keys`` (one per question).

    ``load_images(keys)`` returns the ``(n, 3, S, S)`` normalised images of those keys. The ViT and
    retrieval run once per distinct image, the text tower once per distinct knowledge text, the
    intra-class encoder once per question (its stack is drawn for the question id), ``batch_size`` at a
    time, in eval mode. The chunking depends only on the inputs, so the same inputs give the same table.
    """
    from tqdm.auto import tqdm

    if not (len(image_keys) == len(questions) == len(qids)) or not questions:
        raise ValueError(
            f"image_keys, questions, qids: expected equal non-zero lengths, got {len(image_keys)}, "
            f"{len(questions)}, {len(qids)}"
        )
    c, ks = model.config, model.knowledge_space
    was_training = model.training
    model.eval()
    try:
        distinct = list(dict.fromkeys(image_keys))
        row_of = {k: i for i, k in enumerate(distinct)}
        draw = c.use_intra_class
        patches, classes = [], []
        bar = tqdm(
            total=len(distinct) + len(questions), desc="frozen features", disable=not progress, leave=False
        )
        if c.use_image or draw:
            for start in range(0, len(distinct), batch_size):
                chunk = distinct[start : start + batch_size]
                p, k = _image_parts(model, load_images(chunk), retrieve=draw)
                patches.append(p)
                classes.append(k)
                bar.update(len(chunk))
        image_rows = torch.tensor([row_of[k] for k in image_keys], dtype=torch.long)
        image_classes = torch.cat(classes) if classes else torch.full((len(distinct),), -1, dtype=torch.long)
        knowledge = None
        if c.use_knowledge:
            texts = _knowledge_texts(model, questions, None)
            unique = list(dict.fromkeys(texts))
            table = torch.cat(
                [ks.encode_text(unique[i : i + batch_size]) for i in range(0, len(unique), batch_size)]
            )
            where = {t: i for i, t in enumerate(unique)}
            knowledge = table[torch.tensor([where[t] for t in texts], device=table.device)]
        intra = None
        if draw:
            parts = []
            for start in range(0, len(questions), batch_size):
                rows = image_rows[start : start + batch_size]
                parts.append(_intra(model, image_classes[rows], qids[start : start + batch_size]))
                bar.update(len(rows))
            intra = torch.cat(parts)
        bar.close()
    finally:
        model.train(was_training)
    return FrozenFeatureTable(
        None if not patches or patches[0] is None else torch.cat(patches),
        image_rows,
        image_classes,
        knowledge,
        intra,
    )
