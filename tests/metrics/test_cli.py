"""``python -m bamco_fast.evaluate`` end to end on a small synthetic Slake copy."""

import json

import pytest
from helpers_data import make_slake_copy, slake_entry

from bamco_fast.evaluate.cli import main

_TRAIN = [
    slake_entry(1, "xmlab1/source.jpg", "Is this a CT?", "Yes", "CLOSED"),
    slake_entry(2, "xmlab1/source.jpg", "Which organ is shown?", "Liver"),
    slake_entry(3, "xmlab1/source.jpg", "What is abnormal?", "Nodule"),
]
_TEST = [
    slake_entry(11, "xmlab2/source.jpg", "Is this a CT?", "No", "CLOSED"),
    slake_entry(12, "xmlab2/source.jpg", "Which is bigger, heart or lung?", "Heart", "CLOSED"),
    slake_entry(13, "xmlab2/source.jpg", "What is abnormal?", "nodule"),
    slake_entry(14, "xmlab2/source.jpg", "Which organ is shown?", "Liver"),
]


@pytest.fixture
def slake_root(tmp_path):
    root = tmp_path / "slake"
    make_slake_copy(root, _TRAIN, "train", images=("xmlab1/source.jpg",))
    make_slake_copy(root, _TEST, "test", images=("xmlab2/source.jpg",))
    make_slake_copy(root, _TRAIN[:1], "validate")
    return root


def _predictions(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _score_slake(slake_root, *files, extra=()) -> list[str]:
    """``score FILE... --dataset slake --root SLAKE_ROOT`` arguments, then ``extra``."""
    return ["score", *map(str, files), "--dataset", "slake", "--root", str(slake_root), *extra]


_PREDS = [
    {"qid": "11", "prediction": "no"},
    {"qid": "12", "prediction": "the heart"},
    {"qid": "13", "prediction": "no"},
    {"qid": "14", "prediction": ""},
]


def test_score_joins_the_dataset_and_prints_baselines(tmp_path, slake_root, capsys):
    pred = _predictions(tmp_path / "pred.jsonl", _PREDS)
    out = tmp_path / "report.json"
    args = _score_slake(slake_root, pred, extra=("--n-boot", "100", "--out", str(out)))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "open_containment_bamco" in printed and "majority" in printed and "question_prior" in printed
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    assert metrics["closed_exact"] == {
        **metrics["closed_exact"],
        "n": 2,
        "score": 1.0,
    }  # "the heart" == "Heart"
    assert (metrics["open_exact"]["n"], metrics["open_exact"]["score"]) == (2, 0.0)
    assert metrics["open_containment_bamco"]["score"] == 1.0  # "no" in "nodule", "" in "liver"
    assert report["join"]["n_dataset"] == 4 and report["dataset"]["split"] == "test"
    assert set(report["baselines"]) == {"majority", "question_prior", "empty"}
    assert main([*args[:-2], "--closed-rule", "yesno", "--no-baselines", "--n-boot", "0"]) == 0
    assert "closed rule: yesno (1 closed, 3 open)" in capsys.readouterr().out


def test_several_files_give_mean_and_std(tmp_path, slake_root, capsys):
    a = _predictions(tmp_path / "a.jsonl", _PREDS)
    b = _predictions(tmp_path / "b.jsonl", [{**r, "prediction": "x"} for r in _PREDS])
    out = tmp_path / "r.json"
    assert main(_score_slake(slake_root, a, b, extra=("--out", str(out)))) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["closed_exact"]["runs"] == [1.0, 0.0]
    assert report["metrics"]["closed_exact"]["score"] == 0.5 and len(report["runs"]) == 2
    assert "mean and std over 2 files" in capsys.readouterr().out


def test_file_without_dataset_needs_answers(tmp_path, capsys):
    pred = _predictions(tmp_path / "p.jsonl", [{"qid": "1", "prediction": "no", "answer": "nodule"}])
    assert main(["score", str(pred), "--closed-rule", "yesno", "--n-boot", "0"]) == 0
    assert main(["score", str(pred)]) == 2
    assert "has no 'answer_type'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        (
            [*_PREDS, {"qid": "99", "prediction": "a"}],
            [],
            r"1 prediction id\(s\) not in slake test .*'99' \(line 5\)",
        ),
        (_PREDS[:3], [], r"1 of 4 questions of slake test have no prediction: '14'.*--missing skip"),
        ([*_PREDS, {"qid": "11", "prediction": "a"}], [], r"pred.jsonl:5: duplicate qid '11'"),
        (
            _PREDS,
            ["--bertscore-model", "/nonexistent/roberta-large"],
            r"BERTScore needs a local Hugging Face model",
        ),
        (_PREDS, ["--normalize", "lower,stem"], r"normalisation steps must be among"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, slake_root, capsys, rows, extra, message):
    pred = _predictions(tmp_path / "pred.jsonl", rows)
    assert main(_score_slake(slake_root, pred, extra=extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert __import__("re").search(message, err), err


def test_missing_skip_scores_the_subset(tmp_path, slake_root, capsys):
    pred = _predictions(tmp_path / "pred.jsonl", _PREDS[:3])
    out = tmp_path / "r.json"
    assert main(_score_slake(slake_root, pred, extra=("--missing", "skip", "--out", str(out)))) == 0
    report = json.loads(out.read_text())
    assert report["n_questions"] == 3 and report["join"]["n_missing"] == 1
    assert report["baselines"]["majority"]["n_questions"] == 3


def test_argument_errors(tmp_path, capsys):
    assert main(["score", str(tmp_path / "none.jsonl")]) == 2
    assert "predictions file not found" in capsys.readouterr().err
    pred = _predictions(tmp_path / "p.jsonl", _PREDS)
    assert main(["score", str(pred), "--dataset", "slake"]) == 2
    assert "--dataset and --root go together" in capsys.readouterr().err


def test_baselines_command_writes_scorable_predictions(tmp_path, slake_root, capsys):
    folder = tmp_path / "bl"
    args = ["baselines", "--dataset", "slake", "--root", str(slake_root), "--split", "test", "--n-boot", "0"]
    assert main([*args, "--write-predictions", str(folder), "--out", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "question_prior: question text seen in train for 3 of 4 questions" in printed
    assert sorted(p.name for p in folder.iterdir()) == [
        "empty.jsonl",
        "majority.jsonl",
        "question_prior.jsonl",
    ]
    baselines = json.loads((tmp_path / "b.json").read_text())["baselines"]
    out = tmp_path / "r.json"
    score_args = [
        "score",
        str(folder / "question_prior.jsonl"),
        *args[1:],
        "--no-baselines",
        "--out",
        str(out),
    ]
    assert main(score_args) == 0
    assert json.loads(out.read_text())["metrics"] == baselines["question_prior"]["metrics"]
    assert main([*args[:-2], "--split", "train"]) == 2
    assert "baselines must be scored on another split" in capsys.readouterr().err


def test_module_entry_point_and_light_import(tmp_path):
    import subprocess
    import sys

    # One interpreter: import the packages, list heavy modules, then run `python -m bamco_fast.evaluate`.
    code = (
        "import runpy, sys, bamco_fast.metrics, bamco_fast.evaluate; "
        "print(sorted(m for m in ('sacrebleu', 'rouge_score', 'nltk', 'transformers') if m in sys.modules)); "
        f"sys.argv = ['x', 'score', {str(tmp_path / 'none.jsonl')!r}]; "
        "runpy.run_module('bamco_fast.evaluate', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr
    assert done.returncode == 2 and "predictions file not found" in done.stderr


def test_table_of_several_reports_with_baselines_once_per_question_set(tmp_path, slake_root, capsys):
    reports = []
    for name, rows in (("a", _PREDS), ("b", [{**r, "prediction": "liver"} for r in _PREDS])):
        pred = _predictions(tmp_path / f"{name}.jsonl", rows)
        out = tmp_path / name / "report.json"
        out.parent.mkdir()
        assert main(_score_slake(slake_root, pred, extra=("--n-boot", "0", "--out", str(out)))) == 0
        reports.append(out)
    validate = tmp_path / "v" / "report.json"
    validate.parent.mkdir()
    pred = _predictions(tmp_path / "v.jsonl", [{"qid": "1", "prediction": "yes"}])
    args = _score_slake(slake_root, pred, extra=("--split", "validate", "--n-boot", "0"))
    assert main([*args, "--out", str(validate)]) == 0
    capsys.readouterr()
    table_file = tmp_path / "table.md"
    args = ["table", f"first run={reports[0]}", str(reports[1]), str(validate), "--baselines"]
    assert main([*args, "--out", str(table_file)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert table_file.read_text().strip().splitlines() == lines
    assert lines[0].startswith("| run | n | closed exact | open exact |")
    labels = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    baselines = ["majority answer", "train answer of the same question", "empty answer"]
    assert labels == ["first run", "b", *baselines, "v", *baselines]
    first = json.loads(reports[0].read_text())["metrics"]
    cells = lines[2].strip("| ").split(" | ")
    assert cells[1] == "4" and cells[2] == f"{100 * first['closed_exact']['score']:.1f}"
    assert cells[-2] == f"{100 * first['overall_exact']['score']:.1f}"
    assert main(["table", str(tmp_path / "missing.json")]) == 2
    assert "report: file not found" in capsys.readouterr().err
    bare = tmp_path / "bare.json"
    no_baselines = ("--no-baselines", "--n-boot", "0", "--out", str(bare))
    assert main(_score_slake(slake_root, tmp_path / "a.jsonl", extra=no_baselines)) == 0
    assert main(["table", str(bare), "--baselines"]) == 2
    assert "the report has no 'baselines'" in capsys.readouterr().err
    pred.write_text("[]")
    assert main(["table", str(pred)]) == 2
    assert "expected a scoring report" in capsys.readouterr().err
