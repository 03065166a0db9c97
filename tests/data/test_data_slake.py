import json

import pytest
from helpers_data import make_slake_copy, shared, slake_entry

from bamco_fast.data import (
    DataFormatError,
    DataWarning,
    LayoutError,
    MissingFileError,
    MissingSplitError,
    SkipLog,
    load_split,
    read_slake,
)


def test_real_slake_train_matches_file_and_language_filter():
    root = shared("slake")
    raw = json.loads((root / "train.json").read_text(encoding="utf-8"))
    with pytest.raises(
        DataFormatError, match=r"entry 1622: expected a non-empty answer, got '' \(qid 1622\)"
    ):
        read_slake(root, "train")  # the copy's one entry with an empty answer is an error for the reader...
    log = SkipLog(kinds=frozenset({"empty answer"}))
    en = read_slake(root, "train", skip_log=log)
    zh = read_slake(root, "train", lang="zh", skip_log=log)
    both = read_slake(root, "train", lang=None, skip_log=log)
    empty = [r for r in raw if not r["answer"].strip()]
    assert [r["qid"] for r in empty] == [1622] and empty[0]["q_lang"] == "en"
    assert len(en) == sum(r["q_lang"] == "en" for r in raw) - 1
    assert len(en) + len(zh) == len(both) == len(raw) - 1
    with pytest.warns(DataWarning, match=r"slake train: left out 1 entry with an empty answer .*qid 1622"):
        assert len(load_split("slake", root, "train")) == len(en)  # ...and a named omission for load_split
    assert {r.lang for r in en} == {"en"}
    first = next(r for r in raw if r["q_lang"] == "en")
    rec = en[0]
    assert (rec.question, rec.answer, rec.image_name) == (
        first["question"],
        first["answer"].strip(),
        first["img_name"],
    )
    assert rec.extra["content_type"] == first["content_type"] and rec.extra["triple"] == first["triple"]
    assert rec.image_path.is_file()
    assert {r.answer_type for r in en} == {"OPEN", "CLOSED"}


def test_real_slake_validate_is_native_not_carved():
    root = shared("slake")
    val = load_split("slake", root, "validate")
    raw = json.loads((root / "validate.json").read_text(encoding="utf-8"))
    assert len(val) == sum(r["q_lang"] == "en" for r in raw)
    assert all("carved_from" not in r.extra for r in val)


def test_missing_image_names_file_or_is_counted(tmp_path):
    root = make_slake_copy(
        tmp_path,
        [
            slake_entry(0, "xmlab0/source.jpg", "Q?", "Lung"),
            slake_entry(1, "xmlab9/source.jpg", "Q?", "Liver"),
        ],
        images=("xmlab0/source.jpg",),
    )
    with pytest.raises(MissingFileError, match=r"xmlab9/source.jpg.*entry 1"):
        read_slake(root, "train")
    log = SkipLog()
    records = read_slake(root, "train", skip_log=log)
    assert [r.qid for r in records] == ["0"] and log.counts["missing image"] == 1


def test_malformed_json_reports_line(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "train.json").write_text('[\n{"img_name": "a"},\n{oops}\n]', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_slake(tmp_path, "train")
    assert info.value.line == 3 and "train.json:3" in str(info.value)


def test_bad_answer_type_and_missing_fields(tmp_path):
    root = make_slake_copy(
        tmp_path, [slake_entry(0, "a.jpg", "Q?", "x", answer_type="MAYBE")], images=("a.jpg",)
    )
    with pytest.raises(DataFormatError, match="answer_type must be OPEN or CLOSED, got 'MAYBE'"):
        read_slake(root, "train")
    make_slake_copy(tmp_path, [{"question": "Q?"}])
    with pytest.raises(DataFormatError, match="entry 0: expected an object with"):
        read_slake(root, "train")


def test_unknown_layout_and_missing_split(tmp_path):
    with pytest.raises(LayoutError, match="imgs"):
        read_slake(tmp_path, "train")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(MissingSplitError, match=r"test\.json"):
        read_slake(tmp_path, "test")


def test_check_splits_without_a_test_split(tmp_path, capsys):
    """The shared Slake copy has train and validate only: the default split list names the fix."""
    from bamco_fast.data.cli import main as data_main

    root = shared("slake")
    assert data_main(["check-splits", "--dataset", "slake", "--root", str(root)]) == 2
    assert "--splits train validate" in capsys.readouterr().err
    assert (
        data_main(
            ["check-splits", "--dataset", "slake", "--root", str(root), "--splits", "train", "validate"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train: 4918 QA, 450 images" in out and "no (image, question) pair is shared" in out
