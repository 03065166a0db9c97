"""Measure a paper-scale run's training step in a fresh process: peak memory per batch size, time split.

    python benchmarks/paper_scale_probe.py pretrain RUN --out probe.json
    python benchmarks/paper_scale_probe.py vqa RUN --out probe.json

``RUN`` is a run folder the command lines wrote (``python -m bamco_fast.train pretrain|vqa``); the probe
rebuilds the same model from it (the pretraining stage's own preparation from its saved config; a VQA
run through :func:`bamco_fast.inference.load_run`) and runs training steps at batch 1, 2 and 4:

* peak memory: the rise of the process's peak RSS over its RSS before the step (``VmHWM`` reset first,
  freed heap returned), after one warm-up step at that batch size; the slope per sample is the
  least-squares line through the three points;
* time split of the batch-4 step: data / towers / intra-class encoder / loss / optimiser (pretraining,
  :mod:`step_profile`), data / towers / intra / llm / loss / optimiser (VQA, :mod:`vqa_step_profile`;
  the towers and intra columns come from a step without the frozen-feature cache, the rest from the
  step the VQA stage runs, with it);
* parameters: total, trainable, and for LoRA the count computed from the shapes of the adapted layers
  (``r * (in + out)`` per layer) beside the count of trainable adapter parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import peak_extra_rss, release_freed_memory, rss_bytes

BATCHES = (1, 2, 4)


def _slope(points: dict[int, float]) -> float:
    xs, ys = list(points), list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _measure(step, batch_size: int) -> tuple[float, dict]:
    """Warm-up step, then a measured step: ``(peak rise in MiB, its time split)``."""
    step(batch_size)
    release_freed_memory()
    with peak_extra_rss() as peak:
        times = step(batch_size)
    return peak["bytes"] / 2**20, times


# ------------------------------------------------------------------------------------------ pretraining
def probe_pretrain(run: Path) -> dict:
    from step_profile import StepProfiler

    from bamco_fast.pretraining import KnowledgeBatches
    from bamco_fast.train.core.entry import read_saved_config
    from bamco_fast.train.core.optim import build_optimizer
    from bamco_fast.train.core.runtime import runtime_of
    from bamco_fast.train.pretrain import STAGE
    from bamco_fast.train.pretrain import data as pdata
    from bamco_fast.train.pretrain.prepare import evaluator, prepare
    from bamco_fast.train.pretrain.task import PretrainTask

    config = read_saved_config(STAGE, run, "probe")
    with runtime_of("cpu", 0) as runtime:
        prep = prepare(config, runtime, log=lambda *a, **k: None)
        model, towers = prep.model, prep.model.towers
        objective = model.objective(prep.tables.train.class_counts, backend=config.objective.backend)
        optimizer = build_optimizer(model, config.optim)
        model.train()
        counter = iter(range(10**6))

        def step(batch_size: int) -> dict:
            sampler = pdata.sampler_config(config, towers.image_size, batch_size)
            batches = KnowledgeBatches(
                prep.tables.train,
                prep.train_cache,
                sampler,
                seed=0,
                mean=towers.image_mean,
                std=towers.image_std,
            )
            task = PretrainTask(
                model, batches, objective, config=config, text_features=prep.text_features,
                image_features=prep.image_features, evaluator=evaluator(prep),
            )  # fmt: skip
            task.loss_backend = "probe"  # no backend line
            prof = StepProfiler(model)
            try:
                prof.start()
                with prof.phase("data"):
                    batch = batches.batch(0, next(counter) % len(batches))
                with prof.forward_backward():
                    task.step_loss(model, batch)["loss"].backward()
                with prof.phase("optimiser"):
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                return prof.stop()
            finally:
                prof.close()

        peaks, split = {}, {}
        for b in BATCHES:
            peaks[b], split = _measure(step, b)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {
            "kind": "pretrain",
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": trainable,
            "resident_mib": rss_bytes() / 2**20,
            "peak_rise_mib": peaks,
            "slope_mib_per_sample": _slope(peaks),
            "split_b4": split,
        }


# ------------------------------------------------------------------------------------------------ VQA
def lora_count_from_shapes(llm) -> tuple[int, int]:
    """``(r * (in + out) summed over the adapted layers, trainable adapter parameters)``."""
    from peft.tuners.lora import LoraLayer

    expected = actual = 0
    for module in llm.modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            conv1d = getattr(module, "fan_in_fan_out", False)
            fan_in, fan_out = (
                (weight.shape[0], weight.shape[1]) if conv1d else (weight.shape[1], weight.shape[0])
            )
            for adapter in module.lora_A:
                expected += module.r[adapter] * (fan_in + fan_out)
    actual = sum(p.numel() for n, p in llm.named_parameters() if p.requires_grad and "lora_" in n)
    return expected, actual


def probe_vqa(run: Path) -> dict:
    from bench_vqa_step import Setup, feature_cache, ours_step

    from bamco_fast.data.images import ImageTable
    from bamco_fast.inference import load_run
    from bamco_fast.train.core.entry import read_saved_config
    from bamco_fast.train.vqa import STAGE
    from bamco_fast.train.vqa.prepare import load_splits

    start = time.perf_counter()
    loaded = load_run(run, device="cpu")
    load_seconds = time.perf_counter() - start
    model = loaded.model
    config = read_saved_config(STAGE, run, "probe")
    records = load_splits(
        dataclasses.replace(config, data=dataclasses.replace(config.data, max_train=16))
    ).train
    table = ImageTable([r.image_path for r in records], loaded.image_size, loaded.mean, loaded.std)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    setup = Setup(model, records, table, None, optimizer)
    model.train()
    cached = {}

    def step(batch_size: int, *, frozen: bool = True) -> dict:
        chunk = records[:batch_size]
        if frozen and batch_size not in cached:
            cached[batch_size] = feature_cache(setup, [chunk])[0][0]
        return ours_step(setup, chunk, frozen=cached[batch_size] if frozen else None).times

    peaks, split = {}, {}
    for b in BATCHES:
        peaks[b], split = _measure(step, b)
    first_epoch = step(4, frozen=False)
    split = {**split, "towers": first_epoch["towers"], "intra": first_epoch["intra"]}
    expected, actual = lora_count_from_shapes(model.llm)
    return {
        "kind": "vqa",
        "llm_parameters": sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" not in n),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in trainable),
        "lora_from_shapes": expected,
        "lora_trainable": actual,
        "llm_dtype": str(next(model.llm.parameters()).dtype).replace("torch.", ""),
        "load_seconds": load_seconds,
        "resident_mib": rss_bytes() / 2**20,
        "peak_rise_mib": peaks,
        "slope_mib_per_sample": _slope(peaks),
        "split_b4": split,
        "first_epoch_step_b4": first_epoch["total"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("pretrain", "vqa"))
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result = probe_pretrain(args.run) if args.kind == "pretrain" else probe_vqa(args.run)
    result["threads"] = torch.get_num_threads()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
