import json

import pytest
from helpers_data import shared, write_json

from bamco_fast.data import LayoutError, load_split, read_vqa_rad
from bamco_fast.data.cli import main as data_main


def _official_counts(root):
    raw = json.loads((root / "VQA_RAD Dataset Public.json").read_text(encoding="utf-8"))
    test = sum(r["phrase_type"] in ("test_freeform", "test_para") for r in raw)
    return len(raw) - test, test


def test_official_layout_split_by_phrase_type():
    root = shared("vqa_rad")
    n_train, n_test = _official_counts(root)
    train = read_vqa_rad(root, "train")
    test = read_vqa_rad(root, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert {r.extra["phrase_type"] for r in test} == {"test_freeform", "test_para"}
    assert {r.answer_type for r in train} == {"OPEN", "CLOSED"}  # "CLOSED " is normalised
    assert all(r.image_path.is_file() for r in test)


@pytest.mark.parametrize(
    ("folder", "files"),
    [
        ("mevf_data_RAD", ("trainset.json", "testset.json")),
        ("hf_flaviagiammarino_order", ("train.json", "test.json")),
    ],
)
def test_mevf_and_hf_order_layouts(folder, files):
    root = shared("vqa_rad", folder)
    for split, name in zip(("train", "test"), files):
        raw = json.loads((root / name).read_text(encoding="utf-8"))
        records = read_vqa_rad(root, split)
        assert len(records) == len(raw)
        assert [r.question for r in records] == [r["question"] for r in raw]  # row order kept
    if folder.startswith("hf"):
        assert records[0].extra["answer_type_source"] == "derived"


def test_validation_is_carved_from_train_by_image_and_seeded():
    root = shared("vqa_rad")
    full = load_split("vqa-rad", root, "train", val_fraction=0)
    train = load_split("vqa-rad", root, "train")
    val = load_split("vqa-rad", root, "validate")
    assert len(train) + len(val) == len(full)
    assert not {r.image_name for r in train} & {r.image_name for r in val}
    assert {r.split for r in val} == {"validate"}
    again = load_split("vqa-rad", root, "validate")
    other = load_split("vqa-rad", root, "validate", seed=1)
    assert [r.qid for r in again] == [r.qid for r in val]
    assert [r.qid for r in other] != [r.qid for r in val]


def _check_splits(root, *args: str) -> int:
    """``python -m bamco_fast.data check-splits --dataset vqa-rad --root ROOT ARGS...``: its exit code."""
    return data_main(["check-splits", "--dataset", "vqa-rad", "--root", str(root), *args])


def test_check_splits_flags_bamco_train_plus_test_head(capsys):
    root = shared("vqa_rad", "hf_flaviagiammarino_order")
    rc = _check_splits(root, "--val-fraction", "0", "--splits", "train+test[:300]", "test")
    out = capsys.readouterr().out
    assert rc == 1
    assert "(image, question) shared: 300 distinct" in out  # exactly the 300 test rows trained on


def test_check_splits_clean_split_exits_zero(tmp_path, capsys):
    root = shared("vqa_rad", "hf_flaviagiammarino_order")
    report = tmp_path / "report.json"
    rc = _check_splits(root, "--splits", "train", "validate", "--json", str(report))
    assert rc == 0
    rows = json.loads(report.read_text())
    assert rows[0]["image_questions"] == 0 and rows[0]["images"] == 0


def test_unknown_layout_and_cli_error(tmp_path, capsys):
    write_json(tmp_path / "something.json", [])
    with pytest.raises(LayoutError, match="unknown VQA-RAD layout"):
        read_vqa_rad(tmp_path, "train")
    rc = _check_splits(tmp_path)
    assert rc == 2 and "unknown VQA-RAD layout" in capsys.readouterr().err
