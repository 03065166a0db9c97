"""Pretraining data time at the paper's shapes: our cache + batched augmentation vs the published PIL loader.

    pytest benchmarks/bench_pretrain_data.py --benchmark-only
    python benchmarks/bench_pretrain_data.py [--rounds 3]      # the same two cases, one table with the ratio

One sample = a 224-px reference view, K=36 intra-class views of 84 px and a text (the published
rules: pool draws with probability 0.8, text probabilities 0.33 / 0.2278 / 0.4422).

Providers:

* ``ours`` (batch 48): :class:`bamco_fast.pretraining.KnowledgeBatches` on the uint8 image cache
  (decoded once, longer side 256; the one-time decode is reported as ``cache_build_s``, not timed per
  batch), RandomResizedCrop / flip / colour jitter / grayscale / RandAugment as batched tensor ops.
  On CUDA the cache and the augmentation run on the GPU.
* ``published`` (batch 8: the published loader's cost is per sample): a reproduction of the authors'
  per-sample pipeline (:class:`published_pretrain.PILLoader`, also the data of bench_pretrain_step's
  published row): for each sample, 37 ``PIL.Image.open`` + decode of the full-size JPEG, each view
  through torchvision's PIL transforms (RandomResizedCrop, RandomHorizontalFlip, ColorJitter,
  RandomGrayscale, RandAugment(2 ops, magnitude 10; torchvision's, standing in for the timm-style one),
  ToTensor, Normalize), stacked. Images are converted to RGB (the published Slake/VQA-RAD loader does
  not convert, which breaks ``Normalize`` on grayscale JPEGs).

Data: BaMCo's ``KG_VQARAD_Train.json`` with the full-size VQA-RAD images from ``../shared/data`` when
present, else the packaged demo data (128-px images, which makes the published decode much cheaper:
the ratio is then a lower bound). ``extra_info`` carries ``samples_per_s`` (from the ``min`` round).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from published_pretrain import PILLoader

from bamco_fast.pretraining import KnowledgeBatches, SamplerConfig, build_image_cache, load_knowledge_table

_SHARED = Path(
    os.environ.get("BAMCO_FAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
_BATCH = {"ours": 48, "published": 8}
_HAS_CUDA = torch.cuda.is_available()


def load_table():
    """(table, description): the published VQA-RAD training knowledge when present, else the demo data."""
    kg = _SHARED / "bamco_kg" / "VQARAD"
    if (kg / "KG_VQARAD_Train.json").is_file():
        from bamco_fast.knowledge import load_image_map

        table = load_knowledge_table(
            kg / "KG_VQARAD_Train.json",
            _SHARED / "vqa_rad" / "VQA_RAD Image Folder",
            image_map=load_image_map(kg / "image_id_to_synpic.json"),
        )
        return table, "VQA-RAD KG_VQARAD_Train.json, full-size images"
    from bamco_fast.demo_data import demo_paths

    paths = demo_paths()
    return load_knowledge_table(paths.knowledge["train"], paths.images), "packaged demo data (128-px images)"


def make(provider: str, device: str):
    """A zero-argument callable producing one batch, plus facts for extra_info."""
    table, source = load_table()
    facts = {"data": source, "batch": _BATCH[provider], "images_in_table": len(table.images)}
    if provider == "ours":
        start = time.perf_counter()
        cache = build_image_cache(table.image_paths, 256, names=table.images)
        facts["cache_build_s"] = round(time.perf_counter() - start, 3)
        batches = KnowledgeBatches(table, cache.to(device), SamplerConfig(batch_size=48), seed=0)
        counter = iter(range(10**9))

        def run():
            out = batches.batch(0, next(counter) % len(batches))
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        run()  # warm-up (imports, first allocations)
        return run, facts
    loader = PILLoader(table)
    order = list(range(len(table)))
    random.Random(0).shuffle(order)
    position = iter(range(10**9))

    def run():
        start = (next(position) * 8) % (len(order) - 8)
        return loader.batch(order[start : start + 8])

    run()
    return run, facts


_CASES = [("ours", "cpu"), ("published", "cpu")] + ([("ours", "cuda")] if _HAS_CUDA else [])


@pytest.mark.parametrize(("provider", "device"), _CASES, ids=[f"{p}-{d}" for p, d in _CASES])
def test_pretrain_data(benchmark, record, provider, device):
    run, facts = make(provider, device)
    benchmark.group = "pretrain data (K=36, 84 px, 224 px reference)"
    benchmark.pedantic(run, rounds=3 if provider == "ours" else 2, iterations=1, warmup_rounds=0)
    per_batch = benchmark.stats.stats.min
    record(device, provider=provider, samples_per_s=round(facts["batch"] / per_batch, 2), **facts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed batches per provider (min is reported)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of our pipeline")
    args = parser.parse_args(argv)
    rows = {}
    for provider, device in (("ours", args.device), ("published", "cpu")):
        run, facts = make(provider, device)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        rows[provider] = (facts, min(times))
    print(
        f"data: {rows['ours'][0]['data']}; torch threads: {torch.get_num_threads()}; device (ours): {args.device}"
    )
    print(
        f"one-time cache build (ours): {rows['ours'][0]['cache_build_s']} s for {rows['ours'][0]['images_in_table']} images"
    )
    print(f"{'provider':<10} {'batch':>5} {'s/batch (min)':>14} {'samples/s':>10}")
    rate = {}
    for provider, (facts, best) in rows.items():
        rate[provider] = facts["batch"] / best
        print(f"{provider:<10} {facts['batch']:>5} {best:>14.3f} {rate[provider]:>10.2f}")
    print(f"ratio ours / published (samples/s): {rate['ours'] / rate['published']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
