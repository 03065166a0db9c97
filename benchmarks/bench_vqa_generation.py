"""VQA evaluation throughput: our batched generation vs the published one-question-at-a-time loop; a training step.

    python benchmarks/bench_vqa_generation.py [--questions 64] [--batch 32] [--threads 1]
    pytest benchmarks/bench_vqa_generation.py --benchmark-only

Same model, same run, same questions (the packaged VQA-RAD demo subset, real images and BaMCo knowledge
records): tiny BiomedCLIP-shaped towers at 224 px (49 image tokens, as ViT-B/16), a knowledge space with the
paper's intra-class shape (K = 36 images of 84 x 84, encoder width 12, random weights: speed does not
depend on them), a tiny Llama, greedy decoding of up to 8 new tokens. Rows:

* ``published`` — batch 1, and per question: the knowledge-space text embedding of the question, a fresh
  stack of 36 images of the retrieved class encoded by the intra-class encoder, then generation
  (the published evaluation loop, ``VQA/src/main.py``; seeded here, random there).
* ``ours-b1`` — batch 1 with the bank's ``sampling="class"``: each class's stack is encoded once and cached
  (exact: the encoder is frozen), so only the caching differs from ``published``.
* ``ours-bN`` — batch N (left padding, KV cache, one generate call per batch) with the class cache; the
  cache fill is timed inside the first pass (``cold``) and a second pass shows the warm rate.

The training-step row times forward + backward + AdamW of the VQA model at batch 16 and prints a
torch.profiler table of where the time goes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_NEW_TOKENS = 8


def build(folder: Path, *, sampling: str):
    """Tiny towers + knowledge space (paper intra-class shape) + tiny Llama + model on the demo subset."""
    import transformers

    from bamco_fast.data import load_split
    from bamco_fast.data.images import ImageTable
    from bamco_fast.demo_data import demo_paths
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
    from bamco_fast.models.tiny import build_tiny_towers
    from bamco_fast.models.tiny_lm import build_tiny_causal_lm
    from bamco_fast.models.towers import load_towers
    from bamco_fast.models.vqa import VQAModelConfig, build_vqa_model
    from bamco_fast.pretraining.records import load_knowledge_table

    transformers.utils.logging.disable_progress_bar()
    paths = demo_paths()
    records = load_split("vqa-rad", paths.vqa_root, "test")
    classes = load_knowledge_table(paths.knowledge["train"], paths.images).classes
    towers_dir, ks_dir, llm_dir = folder / "towers", folder / "ks", folder / "llm"
    if not ks_dir.exists():
        build_tiny_towers(towers_dir, [*classes, *(r.question for r in records)], image_size=224)
        towers = load_towers(f"local-dir:{towers_dir}")
        config = KnowledgeSpaceConfig(tower=f"local-dir:{towers_dir}", embed_dim=towers.embed_dim)
        KnowledgeSpace(config, classes, towers).save(ks_dir)
        build_tiny_causal_lm(llm_dir, "llama", [f"{r.question} {r.answer}" for r in records])
    ks = KnowledgeSpace.load(ks_dir)
    bank = build_intra_bank(ks, paths.knowledge["train"], paths.images, sampling=sampling)
    model = build_vqa_model(VQAModelConfig(llm=str(llm_dir), max_new_tokens=MAX_NEW_TOKENS), ks, bank).eval()
    table = ImageTable(
        [r.image_path for r in records], ks.towers.image_size, ks.towers.image_mean, ks.towers.image_std
    )
    return model, records, table


def answer_rate(model, records, table, batch: int) -> tuple[float, list[str]]:
    """Answers per second over ``records`` at batch ``batch``; also returns the answers."""
    from bamco_fast.train.vqa.data import iter_batches

    answers: list[str] = []
    start = time.perf_counter()
    with torch.no_grad():
        for b in iter_batches(records, table, batch):
            out = model.generate(b.images, b.questions, qids=b.qids, max_new_tokens=MAX_NEW_TOKENS)
            answers.extend(a.text for a in out)
    return len(records) / (time.perf_counter() - start), answers


def training_step_profile(model, records, table, batch: int = 16, steps: int = 3) -> tuple[float, str]:
    """Mean seconds of forward + backward + AdamW at ``batch``, and a profiler table of one step."""
    from bamco_fast.train.vqa.data import iter_batches

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    data = next(iter_batches(records, table, batch))

    def step():
        loss = model(data.images, data.questions, data.answers, qids=data.qids)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (fills the class cache, allocates optimiser state)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    model.eval()
    return seconds, prof.key_averages().table(sort_by="cpu_time_total", row_limit=12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        published, records, table = build(Path(tmp), sampling="question")
        ours, _, _ = build(Path(tmp), sampling="class")
        records = records[: args.questions]
        rows = {}
        rows["published (batch 1, per-question knowledge)"], _ = answer_rate(published, records, table, 1)
        rows[f"ours-b{args.batch} cold (class cache filled here)"], batched = answer_rate(
            ours, records, table, args.batch
        )
        rows[f"ours-b{args.batch} warm"], _ = answer_rate(ours, records, table, args.batch)
        rows["ours-b1 (class cache)"], single = answer_rate(ours, records, table, 1)
        base = rows["published (batch 1, per-question knowledge)"]
        print(
            f"{len(records)} questions, up to {MAX_NEW_TOKENS} new tokens, {torch.get_num_threads()} thread(s)"
        )
        print(f"{'row':<48}{'answers/s':>10}{'speed-up':>10}")
        for name, rate in rows.items():
            print(f"{name:<48}{rate:>10.2f}{rate / base:>9.1f}x")
        print(f"batched answers equal one-at-a-time answers: {batched == single}")
        if not args.no_profile:
            seconds, profile = training_step_profile(ours, records, table)
            print(f"\ntraining step (batch 16, forward + backward + AdamW): {1000 * seconds:.0f} ms")
            print(profile)
    return 0


def test_batched_generation(benchmark):
    """pytest-benchmark entry: batch-32 generation with the class cache warm (64 questions)."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model, records, table = build(Path(tmp), sampling="class")
        records = records[:64]
        answer_rate(model, records, table, 32)
        benchmark(answer_rate, model, records, table, 32)


if __name__ == "__main__":
    raise SystemExit(main())
