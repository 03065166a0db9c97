"""The VQA-step benchmark at tiny width: every row runs, profiles, and trains the same model.

Tiny BiomedCLIP-shaped towers and a tiny Llama 3.2 (full 128,256-token vocabulary) with random weights,
the packaged demo questions and knowledge, K = 64 intra-class images of 32 px, batch 2, one timed step.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_vqa_step import ROWS, answers_per_second, format_table, load_setup, run_row
from published_vqa import published_batch
from vqa_step_profile import PHASES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os

    previous = os.environ.get("BAMCO_FAST_BENCH_CACHE")
    os.environ["BAMCO_FAST_BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    try:
        yield load_setup("tiny")
    finally:
        if previous is None:
            os.environ.pop("BAMCO_FAST_BENCH_CACHE", None)
        else:
            os.environ["BAMCO_FAST_BENCH_CACHE"] = previous


def test_every_row_runs_and_profiles(setup):
    rows = [run_row(setup, row, batch=2, steps=1) for row in ROWS]
    for out in rows:
        times = out["times"]
        assert set(PHASES) <= set(times) and math.isfinite(out["loss"])
        assert sum(times[p] for p in PHASES) <= times["total"] * 1.01
    published, first, cached, full_logits = rows
    assert published["times"]["intra"] > 0 and published["times"]["towers"] > 0
    assert first["times"]["intra"] > 0
    for row in (cached, full_logits):
        assert row["times"]["intra"] == 0 == row["times"]["towers"]
        assert row["facts"]["cache_bytes_per_question"] > 0
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "vs published" in table


def test_the_published_batch_is_right_padded_to_256_with_answer_labels(setup):
    model = setup.model
    records = setup.records[:3]
    batch = published_batch(
        model.tokenizer, model.prefix_ids(), [r.question for r in records], [r.answer for r in records]
    )
    assert batch["input_ids"].shape == (3, 256) and bool(batch["attention_mask"][:, 0].all())
    eos = model.tokenizer.eos_token_id
    for row, r in enumerate(records):
        answer = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert answer[-1] == eos and model.tokenizer.decode(answer[:-1]).strip() == r.answer.strip()


def test_batched_answers_equal_one_at_a_time(setup):
    out = answers_per_second(setup, questions=3, max_new_tokens=3)
    assert out["same_answers"] and out["batched_answers_per_s"] > 0
