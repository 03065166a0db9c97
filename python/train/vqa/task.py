"""The VQA stage as a task of the shared loop: answer-only loss, validation loss for selection."""

from __future__ import annotations

import torch

from ..core.task import Task
from .data import iter_batches

__all__ = ["VQATask"]


class VQATask(Task):
    """Batches are global batches of ``batch_size`` records in a seeded per-epoch order
    (:func:`~bamco_fast.train.vqa.data.iter_batches`, last partial batch dropped); each rank takes its
    contiguous share. Validation loss = answer-token-weighted mean over the validation split.

    With ``cache`` the frozen features of every training and validation question are computed once here
    (:func:`~bamco_fast.models.vqa_features.frozen_feature_table`; every rank computes them all, on its
    device) and batches carry their rows instead of images.
    """

    selection_metric = "val_loss"
    selection_mode = "min"
    plot_title = "VQA"

    def __init__(
        self,
        model,
        train,
        validate,
        table,
        *,
        batch_size,
        eval_batch_size,
        seed,
        runtime,
        cache=False,
        progress=False,
    ):
        self.model = model
        self.train_records, self.val_records = list(train), list(validate)
        self.table = table
        self.global_batch = int(batch_size)
        self.local_batch = runtime.local_batch(self.global_batch)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        self.runtime = runtime
        self.train_frozen = self._frozen(self.train_records, progress) if cache else None
        self.val_frozen = self._frozen(self.val_records, progress) if cache else None

    def _frozen(self, records, progress: bool):
        from bamco_fast.models.vqa_features import frozen_feature_table

        table = self.table
        return frozen_feature_table(
            self.model,
            [str(r.image_path) for r in records],
            lambda keys: table.normalized(table.rows(keys)),
            [r.question for r in records],
            [r.qid for r in records],
            batch_size=self.eval_batch_size,
            progress=progress,
        )

    def steps_per_epoch(self) -> int:
        return len(self.train_records) // self.global_batch

    def train_batches(self, epoch: int, start: int):
        rank, local = self.runtime.rank, self.local_batch
        for batch in iter_batches(
            self.train_records,
            self.table,
            self.global_batch,
            shuffle=True,
            seed=self.seed,
            epoch=epoch,
            start=start,
            drop_last=True,
            frozen=self.train_frozen,
        ):
            yield batch.part(slice(rank * local, (rank + 1) * local)).to(self.runtime.device)

    def step_loss(self, model, batch) -> dict[str, torch.Tensor]:
        out = model(batch.images, batch.questions, batch.answers, qids=batch.qids, frozen=batch.frozen)
        return {"loss": out["loss"]}

    def evaluate(self) -> dict[str, float]:
        total, tokens = 0.0, 0
        for batch in iter_batches(self.val_records, self.table, self.eval_batch_size, frozen=self.val_frozen):
            batch = batch.to(self.runtime.device)
            out = self.model(
                batch.images, batch.questions, batch.answers, qids=batch.qids, frozen=batch.frozen
            )
            n = int(out["answer_tokens"])
            total += float(out["loss"]) * n
            tokens += n
        return {"val_loss": total / max(tokens, 1)}
