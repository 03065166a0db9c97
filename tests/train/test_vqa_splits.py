"""Splits of the VQA stage: honest selection/evaluation splits and the leakage refusal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_helpers import shared_data, slake_item, write_slake_copy

from bamco_fast.data.vqa_splits import LeakageError, check_leakage, drop_leaked, load_vqa_splits


def _images(records) -> set[str]:
    return {r.image_name for r in records}


def test_slake_without_test_evaluates_validate_and_selects_on_carved_train():
    root = shared_data("slake")
    splits = load_vqa_splits("slake", root)
    assert splits.eval_split == "validate"
    assert {r.split for r in splits.evaluate} == {"validate"}
    assert "carved_from" not in splits.evaluate[0].extra  # the shipped validation split, untouched
    assert all(r.extra.get("carved_from") == "train" for r in splits.validate)
    assert not _images(splits.train) & _images(splits.validate)
    assert not _images(splits.train) & _images(splits.evaluate)
    assert not _images(splits.validate) & _images(splits.evaluate)
    assert (
        len(splits.train) + len(splits.validate) == 4918
    )  # English train of our copy (one entry with an empty answer left out)
    check_leakage(splits)
    with pytest.raises(Exception, match="no test split"):
        load_vqa_splits("slake", root, eval_split="test")


def test_vqa_rad_official_layout_is_refused_naming_the_leaked_pair():
    root = shared_data("vqa_rad")
    splits = load_vqa_splits("vqa-rad", root)
    with pytest.raises(
        LeakageError, match=r"train -> evaluate \(test\): 1 \(image, question\).*synpic31955\.jpg"
    ):
        check_leakage(splits)
    cleaned, dropped = drop_leaked(splits)
    assert dropped == 1 and len(cleaned.evaluate) == len(splits.evaluate) - 1
    check_leakage(cleaned)


def test_vqa_rad_hf_order_selects_on_carved_validation():
    splits = load_vqa_splits("vqa-rad", shared_data("vqa_rad", "hf_flaviagiammarino_order"))
    assert splits.eval_split == "test" and len(splits.evaluate) == 451
    assert not _images(splits.train) & _images(splits.validate)
    lines = check_leakage(splits)
    assert any("train vs evaluate (test): 0 (image, question) pairs" in line for line in lines)


def test_pathvqa_train_only_copy_carves_test_and_validation_by_image():
    splits = load_vqa_splits("pathvqa", shared_data("pathvqa"))
    assert splits.eval_split == "test"
    parts = (splits.train, splits.validate, splits.evaluate)
    assert sum(len(p) for p in parts) == 3360
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not _images(parts[a]) & _images(parts[b])
    assert {r.split for r in splits.evaluate} == {"test"} and {r.split for r in splits.validate} == {
        "validate"
    }
    again = load_vqa_splits("pathvqa", shared_data("pathvqa"))
    assert [r.qid for r in again.evaluate] == [r.qid for r in splits.evaluate]  # seeded


def test_leak_between_train_and_test_is_refused_with_its_name(tmp_path):
    train = [slake_item(i, f"x{i}/source.jpg", f"What organ is shown {i}?", "liver") for i in range(6)]
    val = [slake_item(100, "v/source.jpg", "Is this a CT?", "yes", "CLOSED")]
    test = [
        slake_item(200, "x3/source.jpg", "what organ is SHOWN 3", "liver"),
        slake_item(201, "t/source.jpg", "Q?", "a"),
    ]
    root = write_slake_copy(tmp_path / "slake", {"train": train, "validate": val, "test": test})
    splits = load_vqa_splits("slake", root)
    assert splits.eval_split == "test"
    with pytest.raises(LeakageError) as info:
        check_leakage(splits)
    message = str(info.value)
    assert "train -> evaluate (test)" in message and "qid 200" in message and "x3/source.jpg" in message
    assert "refusing to start" in message


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data root for slake not found"):
        load_vqa_splits("slake", tmp_path / "nope")
    with pytest.raises(ValueError, match="eval_split must be"):
        load_vqa_splits("slake", tmp_path, eval_split="dev")
