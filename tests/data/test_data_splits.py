from pathlib import Path

import pytest

from bamco_fast.data import VQARecord, carve_validation, normalize_question, overlap_report, parse_split_expr


def _rec(image, question, split="train"):
    return VQARecord("x", split, question, image, Path(image), question, "a", "OPEN", "en")


def test_parse_split_expr():
    assert parse_split_expr("train+test[:300]") == [("train", slice(None)), ("test", slice(None, 300))]
    assert parse_split_expr("validation[10:-5]") == [("validate", slice(10, -5))]
    with pytest.raises(ValueError, match="bad split expression"):
        parse_split_expr("train+dev")


def test_normalize_question():
    assert normalize_question("  Is the LUNG  abnormal? ") == normalize_question("is the lung abnormal")


def test_overlap_levels():
    a = [_rec("i1", "What organ?"), _rec("i2", "Is it normal?")]
    b = [_rec("i1", "what organ"), _rec("i3", "Is it normal?"), _rec("i4", "Where?")]
    report = overlap_report("train", a, "test", b)
    assert (report.questions, report.image_questions, report.images) == (2, 1, 1)
    assert report.b_items_leaked == 1 and report.leaks
    assert not overlap_report("train", a, "test", b[1:]).leaks


def test_carve_validation_fraction_and_errors():
    records = [_rec(f"i{i}", f"q{j}") for i in range(10) for j in range(3)]
    train, val = carve_validation(records, fraction=0.2, seed=0)
    assert len({r.image_name for r in val}) == 2 and len(train) + len(val) == 30
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(records, fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="1 image"):
        carve_validation(records[:3], fraction=0.5, seed=0)
