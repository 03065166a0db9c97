"""Knowledge-space pretraining: ``python -m bamco_fast.train pretrain [--preset P] [--config F] [--set k=v]``.

With no arguments it runs the embedded demo (packaged VQA-RAD subset, tiny towers built locally into the
run folder and loaded through ``local-dir:``). A run folder holds ``config.json``/``config.yaml``,
``towers/`` (tiny towers only), ``checkpoints/`` (rolling, ``best.pt`` on validation matching),
``metrics.jsonl``, ``curves.png``, ``knowledge_space/`` (the selected model, loadable with
``KnowledgeSpace.load``), ``validation_images.json`` (the images held out, read by the VQA stage),
``matching.json``/``matching.txt``/``matching.html`` (the matching table: untrained towers, optionally
the alignment baseline, BaMCo). ``--eval-only RUN`` recomputes the table of a finished run. The flags
shared with the VQA stage are described in :mod:`bamco_fast.train.core.entry`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from bamco_fast.boundary import UsageError

from ..core.entry import Request, Stage
from .config import PRESETS, PretrainConfig
from .prepare import Prepared, evaluator, prepare

__all__ = ["STAGE", "check", "run"]

VALIDATION_IMAGES = "validation_images.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alignment",
        action="store_true",
        help="also train the plain-CLIP 'alignment' baseline for the table",
    )


def apply_arguments(config: PretrainConfig, args: argparse.Namespace) -> PretrainConfig:
    return dataclasses.replace(config, alignment=True) if getattr(args, "alignment", False) else config


def is_run(data: dict) -> bool:
    return "objective" in data and "tiny" in data


def check(config: PretrainConfig, request: Request) -> None:
    """Before any work: the knowledge files, image folder and towers exist (a finished run for ``eval``)."""
    from bamco_fast.models.sources import locate

    if request.mode == "eval" and not (request.run_dir / "knowledge_space").is_dir():
        raise UsageError(
            f"--eval-only: {request.run_dir} holds no knowledge_space/ folder: the run did not finish"
        )
    d = config.data
    for key in ("train_knowledge", "image_root"):
        if not getattr(d, key):
            raise UsageError(f"data.{key}: a path is required (set it with --set data.{key}=PATH)")
    for key in ("train_knowledge", "val_knowledge", "image_root", "image_map", "vqa_root"):
        value = getattr(d, key)
        if value and not Path(value).exists():
            raise UsageError(f"data.{key}: expected an existing file or folder, got {value!r}")
    tower = config.model.tower
    if not config.tiny.enabled and request.mode != "eval":
        if tower.startswith("local-dir:"):
            locate(tower[len("local-dir:") :], key="model.tower", marker="open_clip_config.json")
        elif tower.startswith("hf-hub:"):
            locate(tower[len("hf-hub:") :], key="model.tower", marker="open_clip_config.json")


def _train_one(prep: Prepared, run_dir: Path, resume: Path | None, log=print) -> dict[str, float] | int:
    """Train ``prep.model`` into ``run_dir``; load the best weights; save ``knowledge_space/``; validation scores
    (an exit code instead when training stopped early, 0, or was interrupted, 130)."""
    from bamco_fast.pretraining import KnowledgeBatches

    from ..core.checkpoint import load_checkpoint
    from ..core.config import save_resolved, saved_dict
    from ..core.loop import train
    from ..core.optim import load_trainable_state
    from .prepare import evaluator
    from .task import PretrainTask

    config, runtime = prep.config, prep.runtime
    towers = prep.model.towers
    batches = KnowledgeBatches(
        prep.tables.train,
        prep.train_cache.to(runtime.device),
        prep.sampler,
        seed=config.loop.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        mean=towers.image_mean,
        std=towers.image_std,
    )
    objective = None
    if config.objective.loss == "bamco":
        objective = prep.model.objective(
            prep.tables.train.class_counts,
            backend=config.objective.backend,
            gather_distributed=runtime.distributed,
        )
    text_tokens = None
    if not prep.model.config.freeze_text_tower:
        text_tokens = prep.model.towers.tokenize(list(prep.tables.train.strings)).to(runtime.device)
    task = PretrainTask(
        prep.model,
        batches,
        objective,
        config=config,
        text_features=prep.text_features,
        image_features=prep.image_features,
        evaluator=evaluator(prep),
        text_tokens=text_tokens,
    )
    config_dict = saved_dict(config, run_dir)
    if runtime.is_main and resume is None:
        save_resolved(config, run_dir)
    log(
        f"training '{config.objective.loss}': {config.loop.epochs} epoch(s) x {len(batches)} steps"
        f"{f' (stopping at step {config.loop.max_steps})' if config.loop.max_steps else ''} of "
        f"{config.loop.batch_size} samples, {sum(p.numel() for p in prep.model.parameters() if p.requires_grad):,} "
        f"trainable parameters, device {runtime.device}, {runtime.world_size} process(es)"
    )
    result = train(
        task, config.loop, config.optim, run_dir, config_dict=config_dict, runtime=runtime, resume=resume
    )
    if result.interrupted or result.stopped_early:
        return 130 if result.interrupted else 0
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        state = load_checkpoint(best)
        load_trainable_state(prep.model, state["model"], str(best))
        log(
            f"selected step {state['step']} on validation ({task.selection_metric} = {result.best_value:.4f})"
        )
    prep.model.eval()
    if runtime.is_main:
        prep.model.save(run_dir / "knowledge_space", include_towers=config.tiny.enabled, overwrite=True)
    with torch.no_grad():
        return task.evaluator(prep.model)


def _write_table(
    run_dir: Path, results: dict[str, dict[str, float]], config: PretrainConfig, val_source: str
) -> str:
    from bamco_fast.data.jsonio import atomic_write_bytes
    from bamco_fast.matching import format_matching_table

    table = format_matching_table(results)
    header = (
        f"matching on {config.data.dataset} validation records ({val_source}), protocol "
        f"'{config.eval.protocol}', top-k accuracy in %\n"
    )
    atomic_write_bytes(run_dir / "matching.txt", (header + table + "\n").encode())
    payload = {
        "protocol": config.eval.protocol,
        "dataset": config.data.dataset,
        "validation": val_source,
        "results": results,
    }
    atomic_write_bytes(run_dir / "matching.json", (json.dumps(payload, indent=1) + "\n").encode())
    return header + table


def _write_validation_images(prep: Prepared, run_dir: Path) -> None:
    """The images whose records this run holds out: the VQA stage reads them (it never imports this stage)."""
    from bamco_fast.data.jsonio import atomic_write_text

    data = {"source": prep.tables.val_source, "images": sorted(prep.tables.val.images)}
    atomic_write_text(run_dir / VALIDATION_IMAGES, json.dumps(data, indent=1) + "\n")


def run(config: PretrainConfig, request: Request) -> int:
    """Train (``new``/``resume``) and write the matching table, or recompute it (``eval``)."""
    from ..core.runtime import runtime_of

    with runtime_of(config.loop.device, config.loop.num_threads) as runtime:
        log = print if runtime.is_main else (lambda *a, **k: None)
        if request.mode == "eval":
            return _eval_only(config, request.run_dir, runtime, log)
        return _train_run(config, request, runtime, log)


def _train_run(config: PretrainConfig, request: Request, runtime, log) -> int:
    run_dir = Path(config.out)
    log(f"pretrain: {request.mode} run in {run_dir}")
    prep = prepare(config, runtime, log=log)
    results: dict[str, dict[str, float]] = {}
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_validation_images(prep, run_dir)
        with torch.no_grad():
            results["untrained"] = evaluator(prep, untrained=True)(prep.model)
    resume = (request.checkpoint or request.run_dir) if request.mode == "resume" else None
    bamco = _train_one(prep, run_dir, resume, log=log)
    if isinstance(bamco, int):
        return bamco  # stopped early or interrupted: a resumable checkpoint was written
    if prep.config.alignment:
        align_cfg = dataclasses.replace(
            prep.config,
            objective=dataclasses.replace(prep.config.objective, loss="alignment"),
            tiny=dataclasses.replace(prep.config.tiny, enabled=False),
            alignment=False,
            out=str(run_dir / "alignment"),
        )
        align = _train_one(prepare(align_cfg, runtime, log=log), run_dir / "alignment", None, log=log)
        if isinstance(align, int):
            return align
        results["alignment"] = align
    results["BaMCo"] = bamco
    if runtime.is_main:
        _write_outputs(prep, run_dir, results, {"BaMCo": prep.model})
        log(
            f"outputs in {run_dir}: knowledge_space/ (the model), checkpoints/, metrics.jsonl, curves.png, matching.txt"
        )
    return 0


def _write_outputs(prep: Prepared, run_dir: Path, results: dict, models: dict | None = None) -> None:
    from .matching_page import write_matching_page

    print(_write_table(run_dir, results, prep.config, prep.tables.val_source))
    print(f"matching page: {write_matching_page(prep, run_dir, results, models)}")


def _eval_only(config: PretrainConfig, run: Path, runtime, log) -> int:
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    config = dataclasses.replace(config, tiny=dataclasses.replace(config.tiny, enabled=False))
    prep = prepare(config, runtime, log=log)
    results = {"untrained": evaluator(prep, untrained=True)(prep.model)}
    for name, folder in (
        ("alignment", run / "alignment" / "knowledge_space"),
        ("BaMCo", run / "knowledge_space"),
    ):
        if folder.is_dir():
            model = KnowledgeSpace.load(folder, device=runtime.device).eval()
            with torch.no_grad():
                results[name] = evaluator(prep)(model)
    _write_outputs(prep, run, results)
    return 0


STAGE = Stage("pretrain", PretrainConfig, PRESETS, "demo", add_arguments, apply_arguments, check, run, is_run)
