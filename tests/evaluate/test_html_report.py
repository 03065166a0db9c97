"""The HTML page of a VQA run's answers: written by the training stage and by ``evaluate report``.

Built from the tiny Slake run the VQA stage tests train once per session (real images and questions).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from headless_chromium import check_screenshot, page_errors, render
from vqa_helpers import trained_slake_run

from bamco_fast.evaluate import build_report_html, main
from bamco_fast.evaluate.report_rows import question_verdicts

pytestmark = pytest.mark.usefixtures("one_thread")

CONTROLS = ("side", "wrong", "lenient", "text", "sort", "size", "prev", "next", "rows")


def page_data(text: str) -> dict:
    found = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    assert found, "no data block in the page"
    return json.loads(found.group(1))


def predictions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions_validate.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run() -> Path:
    return trained_slake_run()[0]


@pytest.fixture(scope="module")
def model(run):
    from bamco_fast.inference import load_run

    return load_run(run, device="cpu").model


def test_training_writes_one_entry_per_question_with_its_image_and_verdicts(run):
    text = (run / "report_validate.html").read_text(encoding="utf-8")
    data, rows = page_data(text), predictions(run)
    assert [r["qid"] for r in data["rows"]] == [r["qid"] for r in rows]  # one entry per question, in order
    files = {r["image"] for r in rows}
    assert all(Path(f).is_file() for f in files)  # the training stage records each question's image file
    ids = {r["img"] for r in data["rows"]}
    assert len(ids) == len(files) and all(
        data["images"][i].startswith("data:image/jpeg;base64,") for i in ids
    )
    assert len([k for k in data["images"] if k.startswith("i")]) == len(files)  # each image embedded once
    for control in CONTROLS:
        assert f'id="{control}"' in text, control
    assert "correct only under containment" in text and "http://" not in text and "https://" not in text
    report = json.loads((run / "report_validate.json").read_text())
    for name in ("closed_exact", "open_exact", "open_recall", "overall_exact", "overall_bamco_published"):
        assert f"{100 * report['metrics'][name]['score']:.1f}" in text, name
    assert "majority answer" in text and "train answer of the same question" in text
    # the page's verdicts give the report's numbers back
    verdicts = [r["v"] for r in data["rows"]]
    closed = [v for v in verdicts if v["closed"]]
    opened = [v for v in verdicts if not v["closed"]]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    expected = {
        "closed_exact": mean([v["exact"] for v in closed]),
        "open_exact": mean([v["exact"] for v in opened]),
        "open_recall": mean([v["recall"] for v in opened]),
        "open_containment_bamco": mean([v["containment"] for v in opened]),
        "overall_exact": mean([v["exact"] for v in verdicts]),
        "overall_bamco_published": mean([v["published"] for v in verdicts]),
    }
    for name, value in expected.items():
        assert value == pytest.approx(report["metrics"][name]["score"], abs=1e-3), name


def test_strips_reproduce_the_runs_draw_and_the_cli_writes_the_same_page(run, model, tmp_path, capsys):
    data = page_data((run / "report_validate.html").read_text(encoding="utf-8"))
    bank, k = model.intra_bank, model.config.num_intra_images or model.knowledge_space.config.num_images
    for row in data["rows"]:
        assert row["ent"] in bank.class_names
        drawn = bank.sample_indices(bank.class_names.index(row["ent"]), row["qid"], k)
        assert row["strip"]["ids"] == [f"b{i}" for i in drawn[:6]] and row["strip"]["drawn"] == k
        assert all(data["images"][i].startswith("data:image/jpeg") for i in row["strip"]["ids"])
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--html", str(out)]) == 0  # loads the run from its folder
    assert f"written to {out}" in capsys.readouterr().out
    assert page_data(out.read_text(encoding="utf-8")) == data


def _copy_run(run: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("run.json", "config.json", "report_validate.json", "predictions_validate.jsonl"):
        shutil.copy(run / name, target / name)
    return target


def _rewrite(path: Path, change) -> None:
    """Rewrite each line ``row`` (the ``n``-th) of a predictions file as ``change(row, n)``."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(dict(r), n)) + "\n" for n, r in enumerate(rows)))


def test_older_files_plain_towers_and_entity_input(run, model, tmp_path):
    original = page_data((run / "report_validate.html").read_text(encoding="utf-8"))
    old = _copy_run(run, tmp_path / "old")  # predictions written before rows carried the image file
    _rewrite(old / "predictions_validate.jsonl", lambda r, _: {k: v for k, v in r.items() if k != "image"})
    data = page_data(build_report_html(old, model=model))
    assert [data["images"][r["img"]] for r in data["rows"]] == [
        original["images"][r["img"]] for r in original["rows"]
    ]  # found again through the dataset reader of the run's config
    plain = _copy_run(run, tmp_path / "plain")
    info = json.loads((plain / "run.json").read_text())
    (plain / "run.json").write_text(json.dumps({**info, "plain_towers": True, "bank": None}))
    data = page_data(build_report_html(plain))
    assert "plain towers" in data["no_strip"] and all(r["strip"] is None for r in data["rows"])
    entities = _copy_run(run, tmp_path / "entities")
    _rewrite(
        entities / "predictions_validate.jsonl",
        lambda r, n: {**r, "question_entities": "liver" if n % 2 else ""},
    )
    rows = page_data(build_report_html(entities, model=model))["rows"]
    assert {(r["kk"], r["kt"]) for r in rows[1::2]} == {("entities", "liver")}
    assert all(r["kk"] == "question (no entity found)" and r["kt"] == r["q"] for r in rows[::2])


def test_verdicts_follow_each_protocol():
    v = question_verdicts("no", "nodule", "OPEN")
    assert (v["exact"], v["containment"], v["published"], v["lenient"]) == (0, 1, 1, "piece_in_answer")
    v = question_verdicts("left left", "left lung", "OPEN")
    assert v["recall"] == pytest.approx(2 / 3, abs=1e-4) and v["lenient"] is None
    v = question_verdicts("Yes", "yes", "CLOSED")
    assert (v["closed"], v["exact"], v["recall"], v["containment"], v["published"]) == (
        True,
        1,
        None,
        None,
        1,
    )
    v = question_verdicts("", "liver", None)  # no label: the yes/no rule decides the side
    assert not v["closed"] and v["lenient"] == "empty_prediction"


def test_cli_rejects_bad_input_in_one_line_and_writes_nothing(run, tmp_path, capsys):
    out = tmp_path / "page.html"
    two = _copy_run(run, tmp_path / "two")
    shutil.copy(two / "predictions_validate.jsonl", two / "predictions_test.jsonl")
    cases = [
        ([str(tmp_path / "missing"), "--html", str(out)], "RUN: expected a VQA run folder"),
        ([str(two), "--html", str(out)], "found 2 (test, validate); choose one with --split"),
        ([str(run), "--split", "test", "--html", str(out)], "--split: expected a split"),
        ([str(run), "--html", str(tmp_path)], "--html must be a file path"),
        (
            [str(run), "--html", str(out), "--page-size", "7"],
            "--page-size: expected 25, 50, 100 or 200, got 7",
        ),
    ]
    for args, message in cases:
        assert main(["report", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
        assert not out.exists()


def test_page_renders_in_chromium_with_working_filters(run, tmp_path):
    page = run / "report_validate.html"
    rows = page_data(page.read_text(encoding="utf-8"))["rows"]
    wanted = [r for r in rows if not r["v"]["closed"] and not r["v"]["exact"]]
    dom, console = render(
        f"{page.as_uri()}#side=open&wrong=1&size=25", tmp_path, screenshot=tmp_path / "r.png"
    )
    check_screenshot(tmp_path / "r.png")
    assert console == [], console  # the page logs nothing: any line is an error
    shown = re.findall(
        r'<tr class="question-row" data-qid="([^"]+)" data-side="(\w+)" data-exact="(\d)"', dom
    )
    assert len(shown) == min(25, len(wanted)) and all(
        side == "open" and exact == "0" for _, side, exact in shown
    )
    assert [q for q, _, _ in shown] == [r["qid"] for r in wanted][:25]
    assert f"{len(wanted)} of {len(rows)} questions" in dom
    dom, console = render(page.as_uri(), tmp_path, screenshot=tmp_path / "all.png")
    assert not page_errors(console) and dom.count('class="question-row"') == min(50, len(rows))
