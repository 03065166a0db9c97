"""Evaluation of a VQA run: batched generation -> predictions JSONL -> scoring report (every protocol).

:func:`predict_records` answers records in batches with the model's greedy, KV-cached generation and
returns :class:`bamco_fast.metrics.Prediction` rows carrying ``qid, question, answer, prediction,
answer_type`` and, in ``extra``, ``retrieved_entity, image_name, image, dataset, split`` (and
``question_entities``, the knowledge text, for ``knowledge_input="entities"``).
:func:`write_evaluation` writes ``predictions_<split>.jsonl`` and ``report_<split>.json`` (the
:func:`bamco_fast.metrics.score` report, plus the no-model baselines of
:func:`bamco_fast.metrics.score_baselines` learnt from the training split) and returns the printed table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from bamco_fast.data import VQARecord
from bamco_fast.data.images import ImageTable

from .data import iter_batches

__all__ = ["predict_records", "write_evaluation"]


@torch.no_grad()
def predict_records(
    model,
    records: Sequence[VQARecord],
    table: ImageTable,
    *,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "generate",
) -> list:
    """Greedy answers for ``records`` in order; one :class:`~bamco_fast.metrics.Prediction` per record."""
    from tqdm.auto import tqdm

    from bamco_fast.metrics import Prediction

    was_training = model.training
    model.eval()
    rows: list = []
    bar = tqdm(total=len(records), desc=desc, unit="q", disable=not progress, dynamic_ncols=True, leave=False)
    entities = getattr(model, "entities", None) if model.config.knowledge_input == "entities" else None
    try:
        for batch in iter_batches(records, table, batch_size):
            answers = model.generate(
                batch.images.to(device), batch.questions, qids=batch.qids, max_new_tokens=max_new_tokens
            )
            found = entities(batch.questions) if entities is not None else [None] * len(batch)
            for record, generated, entity_text in zip(batch.records, answers, found):
                extra = {
                    "retrieved_entity": generated.retrieved_entity,
                    "image_name": record.image_name,
                    "image": str(record.image_path),
                    "dataset": record.dataset,
                    "split": record.split,
                }
                if entity_text is not None:
                    extra["question_entities"] = entity_text
                rows.append(
                    Prediction(
                        qid=record.qid,
                        prediction=generated.text,
                        answer=record.answer,
                        answer_type=record.answer_type,
                        question=record.question,
                        extra=extra,
                    )
                )
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return rows


def write_evaluation(
    run_dir: Path,
    split: str,
    rows: Sequence,
    *,
    eval_records: Sequence[VQARecord] = (),
    train_records: Sequence[VQARecord] = (),
    closed_rule: str = "dataset",
    n_boot: int = 1000,
    seed: int = 0,
    bertscore_model: str | None = None,
    info: dict | None = None,
) -> tuple[Path, Path, str]:
    """Write the predictions and their scoring report; returns ``(predictions, report, table)``.

    The report JSON is the scoring library's (``"metrics"``: protocol -> ``{"n", "score", ...}``) plus
    ``"baselines"`` (each no-model baseline, learnt from ``train_records``, scored on the same
    questions) and ``info``. The table shows the model beside the baselines, then the model's intervals.
    """
    from bamco_fast.data.jsonio import atomic_write_text
    from bamco_fast.metrics import format_side_by_side, score, score_baselines, write_predictions

    run_dir = Path(run_dir)
    pred_path = write_predictions(run_dir / f"predictions_{split}.jsonl", list(rows))
    report = score(
        list(rows), closed_rule=closed_rule, seed=seed, n_boot=n_boot, bertscore_model=bertscore_model
    )
    report.info.update(info or {})
    data = report.to_json()
    columns = {"model": report}
    if train_records and eval_records:
        baselines = score_baselines(
            list(train_records),
            list(eval_records),
            qids={row.qid for row in rows},
            closed_rule=closed_rule,
            seed=seed,
            n_boot=0,
        )
        data["baselines"] = {
            name: {k: v.to_json() for k, v in rep.metrics.items()} for name, rep in baselines.items()
        }
        columns.update(baselines)
    table = format_side_by_side(columns) + "\n\n" + report.format_table()
    report_path = run_dir / f"report_{split}.json"
    atomic_write_text(report_path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return pred_path, report_path, table
