"""Knowledge-driven VQA fine-tuning and evaluation: ``python -m bamco_fast.train vqa``.

Trains the projectors and LoRA adapters of :class:`bamco_fast.models.vqa.VQAModel` on the train split with
the answer-only loss, selects the checkpoint with the lowest validation loss (validation only, never
test), then answers the evaluation split once with batched greedy generation and scores it under every
protocol (:func:`bamco_fast.metrics.score`), beside the no-model baselines.

With no arguments it runs the packaged demo: the VQA-RAD subset shipped with the package, a tiny Llama
built in the run folder and the knowledge space of the demo pretraining run (``runs/pretrain-demo``).

Writes into the run folder: ``config.json``/``.yaml``, ``run.json`` (splits, knowledge-space reference,
bank), ``checkpoints/`` (resumable), ``metrics.jsonl``, ``curves.png``, ``model/`` (trainable weights of
the selected checkpoint), ``predictions_<split>.jsonl``, ``report_<split>.json`` and
``report_<split>.html``. The flags shared with the pretraining stage are described in
:mod:`bamco_fast.train.core.entry`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from bamco_fast.boundary import UsageError

from ..core.entry import Request, Stage
from .config import LLMS, PRESETS, TINY_LLM, VQAConfig
from .prepare import Prepared, knowledge_space_folder, load_splits, prepare

__all__ = ["STAGE", "check", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--knowledge-space",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="pretraining run (its knowledge space)",
    )


def apply_arguments(config: VQAConfig, args: argparse.Namespace) -> VQAConfig:
    if getattr(args, "knowledge_space", None) is None:
        return config
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, knowledge_space=str(args.knowledge_space))
    )


def is_run(data: dict) -> bool:
    return isinstance(data.get("model"), dict) and "llm" in data["model"] and "eval" in data


# ----------------------------------------------------------------------------------------------- checks
def _must_exist(value: str, key: str, *, folder: bool = False) -> None:
    if value and not (Path(value).is_dir() if folder else Path(value).exists()):
        kind = "folder" if folder else "file or folder"
        raise UsageError(f"{key}: expected an existing {kind}, got {value!r}")


def check(config: VQAConfig, request: Request) -> None:
    """Before any work: the evaluated run holds a model; the data, knowledge space and model locations exist."""
    from bamco_fast.models.sources import check_causal_lm, locate

    if request.mode == "eval":
        if not (request.run_dir / "model" / "vqa.json").is_file():
            raise UsageError(
                f"--eval-only: {request.run_dir} holds no trained model (model/vqa.json): the run did not finish"
            )
        return
    d, m = config.data, config.model
    if d.dataset != "demo":
        _must_exist(d.root, "data.root", folder=True)
    for key in ("knowledge", "knowledge_images", "knowledge_image_map"):
        _must_exist(getattr(d, key), f"data.{key}")
    _must_exist(config.eval.bertscore_model, "eval.bertscore_model", folder=True)
    ks = knowledge_space_folder(config)
    if not m.plain_towers and not ks:
        raise UsageError(
            "model.knowledge_space: expected the pretraining run folder (--knowledge-space RUN_DIR), got nothing; "
            "or set model.plain_towers=true for the towers-only configuration"
        )
    if ks and not Path(ks).is_dir():
        hint = " (run `python -m bamco_fast.train pretrain` first)" if d.dataset == "demo" else ""
        raise UsageError(
            f"model.knowledge_space: expected a pretraining run folder, got {ks!r}, which does not exist{hint}"
        )
    if m.plain_towers and m.towers.startswith("hf-hub:"):
        locate(m.towers[len("hf-hub:") :], key="model.towers", marker="open_clip_config.json")
    if m.llm != TINY_LLM:
        check_causal_lm(LLMS.get(m.llm, m.llm), key="model.llm")


# ------------------------------------------------------------------------------------------------- run
def run(config: VQAConfig, request: Request) -> int:
    """Train and evaluate (``new``/``resume``), or evaluate the finished run again (``eval``)."""
    from ..core.runtime import runtime_of

    with runtime_of(config.loop.device, config.loop.num_threads) as runtime:
        if request.mode == "eval":
            return _evaluate_run(config, request, runtime)
        return _train_run(config, request, runtime)


def _write_run_files(prep: Prepared, out: Path) -> None:
    from bamco_fast.data.jsonio import atomic_write_text
    from bamco_fast.inference import RUN_INFO

    from ..core.config import save_resolved

    out.mkdir(parents=True, exist_ok=True)
    save_resolved(prep.config, out)
    atomic_write_text(out / RUN_INFO, json.dumps(prep.info, indent=1) + "\n")


def _train_run(config: VQAConfig, request: Request, runtime) -> int:
    from bamco_fast.inference import MODEL_DIR

    from ..core.config import saved_dict
    from ..core.loop import train
    from ..core.optim import load_trainable_state
    from .task import VQATask

    out = Path(config.out)
    prep = prepare(config, runtime)
    for note in prep.splits.notes:
        print(note)
    optim = config.optim
    if config.warmup_ratio > 0:
        steps = (len(prep.splits.train) // config.loop.batch_size) * config.loop.epochs
        optim = dataclasses.replace(optim, warmup_steps=round(config.warmup_ratio * steps))
    if runtime.is_main and request.mode == "new":
        _write_run_files(prep, out)
    task = VQATask(
        prep.model,
        prep.splits.train,
        prep.splits.validate,
        prep.table,
        batch_size=config.loop.batch_size,
        eval_batch_size=config.eval.batch_size,
        seed=config.loop.seed,
        runtime=runtime,
        cache=config.data.cache_frozen_features,
        progress=config.loop.progress,
    )
    if task.train_frozen is not None and runtime.is_main:
        size = (task.train_frozen.nbytes + task.val_frozen.nbytes) / 2**20
        print(
            f"frozen features of {len(task.train_records)} training and {len(task.val_records)} validation questions computed once ({size:.1f} MiB)"
        )
    if request.mode == "new" and runtime.is_main:
        _validation_before_training(prep, task, out)
    resume = (request.checkpoint or request.run_dir) if request.mode == "resume" else None
    result = train(
        task, config.loop, optim, out, config_dict=saved_dict(config, out), runtime=runtime, resume=resume
    )
    if result.interrupted:
        return 130
    if result.stopped_early or not runtime.is_main:
        return 0
    best = result.best_checkpoint
    if best is not None:
        state = torch.load(best, map_location="cpu", weights_only=False)
        load_trainable_state(prep.model, state["model"], str(best))
        print(f"selected step {result.best_step} (val_loss {result.best_value:.4f}) from {best}")
    prep.model.save_trainable(out / MODEL_DIR)
    return _evaluate(prep, prep.model, out)


def _validation_before_training(prep: Prepared, task, out: Path) -> None:
    from bamco_fast.data.jsonio import atomic_write_text
    from bamco_fast.inference import RUN_INFO

    prep.model.eval()
    with torch.no_grad():
        before = task.evaluate()["val_loss"]
    prep.model.train()
    prep.info["val_loss_before_training"] = before
    atomic_write_text(out / RUN_INFO, json.dumps(prep.info, indent=1) + "\n")
    print(f"validation loss before training: {before:.4f}")


def _evaluate_run(config: VQAConfig, request: Request, runtime) -> int:
    from bamco_fast.data.images import ImageTable
    from bamco_fast.inference import load_run

    out = request.run_dir
    splits = load_splits(config)
    ks = config.model.knowledge_space or None
    loaded = load_run(out, device=runtime.device, knowledge_space=ks if ks and Path(ks).is_dir() else None)
    table = ImageTable([r.image_path for r in splits.evaluate], loaded.image_size, loaded.mean, loaded.std)
    return _evaluate(Prepared(config, splits, loaded.model, table, loaded.info, runtime), loaded.model, out)


def _evaluate(prep: Prepared, model, out: Path) -> int:
    from bamco_fast.evaluate.html_report import write_report_html

    from ..core.optim import autocast
    from .evaluate import predict_records, write_evaluation

    config, splits = prep.config, prep.splits
    start = time.perf_counter()
    with autocast(config.loop, prep.runtime.device):
        rows = predict_records(
            model,
            splits.evaluate,
            prep.table,
            batch_size=config.eval.batch_size,
            max_new_tokens=config.model.max_new_tokens,
            device=prep.runtime.device,
            progress=config.loop.progress,
            desc=f"answering {splits.eval_split}",
        )
    seconds = time.perf_counter() - start
    info = {
        "run": str(out),
        "dataset": splits.dataset,
        "split": splits.eval_split,
        "generation_seconds": round(seconds, 3),
    }
    pred_path, report_path, table = write_evaluation(
        out,
        splits.eval_split,
        rows,
        eval_records=splits.evaluate,
        train_records=splits.train,
        closed_rule=config.eval.closed_rule,
        n_boot=config.eval.n_boot,
        seed=config.loop.seed,
        bertscore_model=config.eval.bertscore_model or None,
        info=info,
    )
    print(f"== {splits.dataset} {splits.eval_split}: {len(rows)} questions answered in {seconds:.1f} s ==")
    print(table)
    print(f"predictions: {pred_path}\nreport: {report_path}")
    print(f"answers page: {write_report_html(out, splits.eval_split, model=model)}")
    return 0


STAGE = Stage("vqa", VQAConfig, PRESETS, "demo-tiny", add_arguments, apply_arguments, check, run, is_run)
