"""The pretraining stage as a task of the shared loop, and the plain-CLIP "alignment" baseline's loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.task import Task
from .config import PretrainConfig

__all__ = ["PretrainTask", "alignment_loss"]


def alignment_loss(modalities: list[torch.Tensor], temperature: float, gather: bool) -> torch.Tensor:
    """Plain CLIP baseline: mean over modality pairs (a, b) of the symmetric InfoNCE loss.

    ``L(a, b) = 0.5 * [CE(a b^T / T, arange) + CE(b a^T / T, arange)]`` over the (all-gathered) batch, with
    L2-normalised (B, D) inputs; no labels, so same-class samples are negatives.
    """
    from bamco_fast.distributed import gather_with_grad

    feats = [gather_with_grad(m, f"modality {i}") if gather else m for i, m in enumerate(modalities)]
    target = torch.arange(feats[0].shape[0], device=feats[0].device)
    losses = []
    for i in range(len(feats)):
        for j in range(i + 1, len(feats)):
            logits = feats[i].float() @ feats[j].float().T / temperature
            losses.append(0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)))
    return torch.stack(losses).mean()


class PretrainTask(Task):
    """The pretraining stage as a :class:`bamco_fast.train.loop.Task`.

    Frozen text features of the training strings (``text_features`` (T, E)) are looked up by
    ``batch.text_index`` (when the text tower trains, ``model.config.freeze_text_tower`` false, its tokens
    ``text_tokens`` (T, L) are looked up instead and encoded every step); frozen image features
    (``image_features`` (M, E)) by ``batch.image_index`` when cached, else the reference images go through
    the frozen image tower every step.
    """

    selection_mode = "max"

    def __init__(
        self,
        model,
        batches,
        objective,
        *,
        config: PretrainConfig,
        text_features,
        image_features,
        evaluator,
        text_tokens=None,
    ):
        self.model = model
        self.text_tokens = text_tokens
        self.batches = batches
        self.objective = objective
        self.config = config
        self.text_features = text_features
        self.image_features = image_features
        self.evaluator = evaluator
        self.selection_metric = f"match/{config.eval.selection_metric}"
        self.find_unused_parameters = config.objective.loss == "alignment"
        self.plot_keys = [
            "match/image->entity/top1",
            "match/image->relation/top1",
            "match/relation->entity/top1",
            "match/entity->definition/top1",
            "match/mean",
        ]
        self.plot_title = f"pretrain {config.data.dataset} ({config.objective.loss})"
        self.loss_backend: str | None = None  # the contrastive loss's backend, known after the first step

    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def train_batches(self, epoch: int, start: int):
        for index in range(start, len(self.batches)):
            yield self.batches.batch(epoch, index)

    def step_loss(self, model, batch) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {"intra_stacks": batch.intra_stacks}
        if self.text_tokens is not None:
            kwargs["text_tokens"] = self.text_tokens[batch.text_index]
        else:
            kwargs["text_features"] = self.text_features[batch.text_index]
        if self.image_features is not None:
            kwargs["image_features"] = self.image_features[batch.image_index]
        else:
            kwargs["images"] = batch.images
        out = model(**kwargs)
        if self.config.objective.loss == "alignment":
            dtype = out.intra.dtype
            loss = alignment_loss(
                [out.image.to(dtype), out.text.to(dtype), out.intra],
                self.config.model.temperature,
                gather=torch.distributed.is_available() and torch.distributed.is_initialized(),
            )
            return {"loss": loss, "alignment_loss": loss.detach()}
        from bamco_fast.models.knowledge_space import KnowledgeSpace

        if self.loss_backend is None:
            self._report_backend(out.intra)
        return KnowledgeSpace.loss(out, batch.labels, self.objective)

    def _report_backend(self, features: torch.Tensor) -> None:
        """Say once which backend runs the contrastive loss on these features (device and dtype)."""
        from bamco_fast.ops.bamco_loss import select_backend

        self.loss_backend = select_backend(features, self.objective.contrastive.backend).name
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            from tqdm.auto import tqdm

            dtype = str(features.dtype).replace("torch.", "")
            # above the progress bar, which is running
            tqdm.write(f"contrastive loss backend: {self.loss_backend} ({features.device.type}, {dtype})")

    def evaluate(self) -> dict[str, float]:
        return {f"match/{k}": v for k, v in self.evaluator(self.model).items()}
