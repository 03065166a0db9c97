"""``python -m bamco_fast.predict``: answers for real images from a trained run; clear errors on bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))

from vqa_helpers import shared_data, trained_slake_run

from bamco_fast.predict import main


@pytest.fixture(scope="module")
def run():
    """A tiny run trained briefly on Slake (shared with the stage tests): ``(run folder, knowledge space)``."""
    folder, _, ks = trained_slake_run()
    return folder, ks


def test_answers_one_question_about_a_real_image(run, capsys):
    image = shared_data("slake", "imgs", "xmlab1", "source.jpg")
    assert (
        main(["--run", str(run[0]), "--image", str(image), "--question", "Which organ is shown?", "--json"])
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert isinstance(row["prediction"], str) and row["retrieved_entity"]
    assert main(["--run", str(run[0]), "--image", str(image), "--question", "Which organ is shown?"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith(f"answer: {row['prediction']}")
        and f"retrieved entity: {row['retrieved_entity']}" in out
    )


def test_a_question_longer_than_max_length_is_answered_with_a_warning(run, capsys):
    image = shared_data("slake", "imgs", "xmlab1", "source.jpg")
    question = " ".join(["is the liver enlarged"] * 2500) + "?"  # 10,000 words
    assert main(["--run", str(run[0]), "--image", str(image), "--question", question, "--json"]) == 0
    captured = capsys.readouterr()
    assert isinstance(json.loads(captured.out)["prediction"], str)
    assert "warning: 1 question(s) longer than the model's max_length" in captured.err
    assert "were cut at their end" in captured.err
    assert main(["--run", str(run[0]), "--image", str(image), "--question", "Which organ is shown?"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_batch_file_and_folder_answer_like_single_questions(run, tmp_path, capsys):
    images = [shared_data("slake", "imgs", f"xmlab{i}", "source.jpg") for i in (1, 2, 3)]
    questions = ["is there a fracture?", "what organ is this?"]
    lines = [
        json.dumps({"image": str(p), "question": q, "qid": f"{p.parent.name}-{i}"})
        for p in images
        for i, q in enumerate(questions)
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "--run",
                str(run[0]),
                "--batch",
                str(tmp_path / "q.jsonl"),
                "--out",
                str(tmp_path / "a.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )
    batch = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(batch) == 6 and all(r["retrieved_entity"] for r in batch)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / f"{p.parent.name}.jpg")
    (tmp_path / "q.txt").write_text("\n".join(questions) + "\n")
    capsys.readouterr()
    assert (
        main(
            [
                "--run",
                str(run[0]),
                "--batch",
                str(folder),
                "--questions",
                str(tmp_path / "q.txt"),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in batch]  # batched = same answers
    capsys.readouterr()
    main(["--run", str(run[0]), "--image", str(images[1]), "--question", questions[1], "--json"])
    single = json.loads(capsys.readouterr().out)
    assert single["prediction"] == batch[3]["prediction"]


def test_bad_inputs_are_clear_errors(run, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    image = shared_data("slake", "imgs", "xmlab1", "source.jpg")
    cases = [
        (["--image", str(bad), "--question", "what is this?"], "cannot decode image"),
        (["--image", str(image), "--question", "   "], "--question: expected a non-empty question"),
        (["--image", str(tmp_path / "none.png"), "--question", "q?"], "--image: image file not found"),
        (["--image", str(image)], "expected --image PATH and --question TEXT"),
    ]
    for extra, message in cases:
        assert main(["--run", str(run[0]), *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["--run", str(tmp_path), "--image", str(image), "--question", "q?"]) == 2
    assert "not a VQA run folder" in capsys.readouterr().err
    moved = tmp_path / "run_copy"
    shutil.copytree(run[0], moved)
    info = json.loads((moved / "run.json").read_text())
    info["knowledge_space"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(info))
    assert main(["--run", str(moved), "--image", str(image), "--question", "q?"]) == 2
    err = capsys.readouterr().err
    assert "knowledge space" in err and "is missing" in err and "--knowledge-space" in err
    assert (
        main(
            ["--run", str(moved), "--knowledge-space", str(run[1]), "--image", str(image), "--question", "q?"]
        )
        == 0
    )


def test_a_merged_copy_answers_like_the_run(run, tmp_path, capsys):
    from bamco_fast.inference.cli import main as inference_main

    assert inference_main(["merge", "--run", str(run[0]), "--out", str(tmp_path / "merged")]) == 0
    assert "merged model written to" in capsys.readouterr().out
    assert (tmp_path / "merged" / "llm" / "model.safetensors.index.json").is_file()
    image = shared_data("slake", "imgs", "xmlab2", "source.jpg")
    args = ["--run", str(run[0]), "--image", str(image), "--question", "Which organ is shown?", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--model", str(tmp_path / "merged")]) == 0
    assert json.loads(capsys.readouterr().out) == plain
    assert inference_main(["merge", "--run", str(run[0]), "--out", str(tmp_path / "merged")]) == 2
    assert "--out: expected a folder that does not exist yet" in capsys.readouterr().err
