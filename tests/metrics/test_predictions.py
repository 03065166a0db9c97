"""Reading and writing predictions files; every bad input names its line."""

import json
import os
import stat

import pytest
from helpers_metrics import hand_made

from bamco_fast.data.errors import MissingFileError
from bamco_fast.metrics import Prediction, PredictionsError, read_predictions, write_predictions


def _write_lines(path, lines):
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def test_round_trip_keeps_fields_and_extra(tmp_path):
    rows = [
        *hand_made(),
        Prediction(qid="g", prediction="肝", extra={"retrieved_entity": "Liver", "split": "test"}),
    ]
    path = write_predictions(tmp_path / "out" / "pred.jsonl", rows)
    back = read_predictions(path)
    assert back == rows
    assert back[-1].extra == {"retrieved_entity": "Liver", "split": "test"}
    assert [r.line for r in back] == list(range(1, len(rows) + 1))
    assert "肝" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes


def test_integer_qids_other_field_names_and_blank_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"question_id": 7, "text": "yes", "answer_type": "closed "}\n\n{"question_id": "8", "text": ""}\n'
    )
    rows = read_predictions(path, qid_field="question_id", prediction_field="text")
    assert [(r.qid, r.prediction, r.answer_type, r.line) for r in rows] == [
        ("7", "yes", "CLOSED", 1),
        ("8", "", None, 3),
    ]


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        ([{"qid": "1", "prediction": "a"}, {"qid": "2"}], r"p\.jsonl:2: missing field\(s\) \['prediction'\]"),
        ([{"prediction": "a"}], r"p\.jsonl:1: missing field\(s\) \['qid'\]"),
        (
            [
                {"qid": "1", "prediction": "a"},
                {"qid": "2", "prediction": "b"},
                {"qid": "1", "prediction": "c"},
            ],
            r"p\.jsonl:3: duplicate qid '1' \(first on line 1\)",
        ),
        (
            [{"qid": "1", "prediction": "a"}, b'{"qid": "2", "prediction": "\xff\xfe"}'],
            r"p\.jsonl:2: not UTF-8",
        ),
        ([b'{"qid": "1", "prediction": '], r"p\.jsonl:1: malformed JSON"),
        ([["qid", "prediction"]], r"p\.jsonl:1: expected a JSON object, got list"),
        (
            [{"qid": "1", "prediction": None}],
            r"p\.jsonl:1: field 'prediction' must be a string, got NoneType",
        ),
        ([{"qid": "", "prediction": "a"}], r"p\.jsonl:1: field 'qid' must be a non-empty string"),
        (
            [{"qid": "1", "prediction": "a", "answer_type": "yes/no"}],
            r"p\.jsonl:1: field 'answer_type' must be",
        ),
        ([b"", b"   "], r"p\.jsonl: empty predictions file"),
    ],
)
def test_bad_input_names_the_line(tmp_path, lines, pattern):
    path = _write_lines(tmp_path / "p.jsonl", lines)
    with pytest.raises(PredictionsError, match=pattern):
        read_predictions(path)


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="predictions file not found"):
        read_predictions(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_file_has_the_normal_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_predictions(tmp_path / "p.jsonl", hand_made())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
