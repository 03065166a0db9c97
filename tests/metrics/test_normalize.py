import pytest

from bamco_fast.metrics import DEFAULT_STEPS, STEPS, normalize_answer, parse_steps


@pytest.mark.parametrize(
    ("text", "steps", "expected"),
    [
        ("  Left   Lung ", DEFAULT_STEPS, "left lung"),
        ("The liver.", DEFAULT_STEPS, "liver"),
        ("x-ray, CT!", DEFAULT_STEPS, "x ray ct"),
        ("The liver.", ("lower", "whitespace"), "the liver."),
        ("The liver.", ("punctuation", "articles", "whitespace"), "The liver"),  # articles are case-sensitive
        ("an apple a day", ("articles",), "apple day"),
        ("肝脏。", DEFAULT_STEPS, "肝脏"),  # Unicode punctuation
        ("Liver", (), "Liver"),
    ],
)
def test_normalize_steps(text, steps, expected):
    assert normalize_answer(text, steps) == expected


def test_parse_steps_orders_and_validates():
    assert parse_steps(None) == DEFAULT_STEPS == STEPS
    assert parse_steps("whitespace,lower") == ("lower", "whitespace")
    assert parse_steps("none") == ()
    with pytest.raises(ValueError, match=r"'stem'.*|.*\['stem'\]"):
        parse_steps("lower,stem")
