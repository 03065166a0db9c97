"""``matching.html``: the matching evaluation as a page, written by the pretraining stage."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))  # pretrain_demo

from headless_chromium import check_screenshot, page_errors, render
from pretrain_demo import demo_slice, pretrain_sets

from bamco_fast.matching import MatchingInputs, matching_scores
from bamco_fast.matching_html import build_matching_html, rank_candidates, sample_images

pytestmark = pytest.mark.usefixtures("one_thread")

RECORDS_TRAIN, RECORDS_VAL = 16, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The first records of the demo's knowledge files, and tiny towers."""
    return demo_slice(tmp_path_factory.mktemp("matching_page"), RECORDS_TRAIN, RECORDS_VAL)


@pytest.fixture(scope="module")
def run(data) -> Path:
    """A short pretraining run (it writes matching.html at its end)."""
    from bamco_fast.train.cli import main as train_main

    out = data["root"] / "run"
    sets = pretrain_sets(data, "loop.epochs=1", "optim.warmup_steps=1")
    assert train_main(["pretrain", "--out", str(out), *sets]) == 0
    return out


def _table(data: dict[str, Path]):
    from bamco_fast.pretraining import load_knowledge_table

    return load_knowledge_table(data["val"], data["images"], lowercase=True)


def test_pretraining_writes_the_page(run, data):
    text = (run / "matching.html").read_text(encoding="utf-8")
    table = _table(data)
    cards = text.split('<div class="card">')[1:]
    assert len(cards) == min(24, len(table.images)) > 1  # one card per sampled validation image
    names = re.findall(r'<div class="qid">([^<]+)<br>', text)
    assert names == [table.images[i] for i in sample_images(len(table.images), 24, 0)]
    for card in cards:
        assert len(re.findall(r'<img class="thumb" src="data:image/jpeg;base64,', card)) == 1
        assert card.count("<h3>untrained</h3>") == 1 and card.count("<h3>BaMCo</h3>") == 1
        lists = re.findall(r'<ol class="rank">(.*?)</ol>', card, re.S)
        assert len(lists) == 6 and all(1 <= item.count("<li") <= 5 for item in lists)  # 3 kinds x 2 models
    results = json.loads((run / "matching.json").read_text())["results"]
    assert f"{100 * results['BaMCo']['image->entity/top5']:.1f}" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_true_strings_are_marked_and_ranked_as_the_matching_table_counts(data):
    table = _table(data)
    d, t = 16, len(table.strings)
    strings = F.normalize(torch.randn(t, d, generator=torch.Generator().manual_seed(0)), dim=-1)
    # an oracle whose image embedding is the embedding of the image's first record's entity
    first = [int((table.record_image == m).nonzero()[0]) for m in range(len(table.images))]
    oracle = strings[table.record_text[first, 0]]
    noise = F.normalize(torch.randn(len(table.images), d, generator=torch.Generator().manual_seed(1)), dim=-1)
    text = build_matching_html(table, {"oracle": (oracle, strings), "noise": (noise, strings)})
    for card in text.split('<div class="card">')[1:]:
        oracle_block = card.split("<h3>oracle</h3>")[1].split("<h3>noise</h3>")[0]
        assert re.search(r'<ol class="rank"><li class="hit"', oracle_block), (
            "the oracle's top-1 entity is true"
        )
    # per record: the page's ranking hits exactly where match_accuracy counts a hit
    inputs = MatchingInputs(image=noise[table.record_image], strings=strings, text_index=table.record_text)
    scores = matching_scores(inputs)
    for kind, column in (("entity", 0), ("definition", 1), ("relation", 2)):
        candidates = torch.unique(table.record_text[:, column])
        hits = [0, 0]
        for r in range(len(table)):
            ranked = rank_candidates(noise[int(table.record_image[r])], strings, candidates).tolist()
            target = int(table.record_text[r, column])
            hits[0] += ranked[0] == target
            hits[1] += target in ranked[:5]
        assert hits[0] / len(table) == pytest.approx(scores[f"image->{kind}/top1"])
        assert hits[1] / len(table) == pytest.approx(scores[f"image->{kind}/top5"])


def test_eval_only_writes_the_page_again_and_it_renders_in_chromium(run, tmp_path):
    from bamco_fast.train.cli import main as train_main

    page = run / "matching.html"
    page.unlink()
    assert train_main(["pretrain", "--eval-only", str(run)]) == 0
    assert page.is_file()
    dom, console = render(page.as_uri(), tmp_path, screenshot=tmp_path / "matching.png")
    check_screenshot(tmp_path / "matching.png")
    assert console == [] and not page_errors(console), console
    assert dom.count('<div class="card">') > 1
