"""No-model baselines on the real data: the numbers in docs/evaluation.md (skipped without ../shared/data)."""

import pytest
from helpers_data import shared

from bamco_fast.data import load_split
from bamco_fast.metrics import score_baselines

# (dataset, folder, split) -> closed rule -> baseline -> protocol -> score in % (docs/evaluation.md)
_EXPECTED = {
    ("slake", "slake", "validate"): {
        "dataset": {
            "majority": {
                "closed_exact": 43.13,
                "open_exact": 8.72,
                "open_containment_bamco": 9.67,
                "overall_exact": 22.51,
            },
            "question_prior": {
                "closed_exact": 65.17,
                "open_exact": 51.03,
                "open_recall": 56.12,
                "open_bleu1": 55.35,
            },
            "empty": {
                "open_containment_bamco": 100.0,
                "overall_bamco_published": 66.00,
                "overall_exact": 0.0,
            },
        },
        "yesno": {"majority": {"closed_exact": 50.84, "open_exact": 7.91}},
    },
    ("vqa-rad", "vqa_rad", "test"): {
        "dataset": {
            "majority": {
                "closed_exact": 43.38,
                "open_exact": 6.15,
                "open_rouge1": 6.52,
                "overall_exact": 28.60,
            },
            "question_prior": {"closed_exact": 51.10, "open_containment_bamco": 8.38, "overall_exact": 33.70},
            "empty": {"open_containment_bamco": 100.0, "overall_bamco_published": 44.35},
        },
        "yesno": {"question_prior": {"closed_exact": 54.58, "open_exact": 7.50}},
    },
}
_COUNTS = {("slake", "validate"): (1053, 422, 358), ("vqa-rad", "test"): (451, 272, 251)}


@pytest.mark.parametrize("key", list(_EXPECTED), ids=lambda k: f"{k[0]}-{k[2]}")
def test_baselines_match_the_documented_table(key):
    dataset, folder, split = key
    root = shared(folder)
    train = load_split(dataset, root, "train", check_images=False)
    records = load_split(dataset, root, split, check_images=False)
    n, closed_by_label, closed_yes_no = _COUNTS[(dataset, split)]
    assert len(records) == n
    for rule, baselines in _EXPECTED[key].items():
        reports = score_baselines(train, records, closed_rule=rule, n_boot=0)
        counts = reports["majority"].rule_counts
        assert (counts["dataset"]["closed"], counts["yesno"]["closed"]) == (closed_by_label, closed_yes_no)
        for name, expected in baselines.items():
            metrics = reports[name].metrics
            for protocol, value in expected.items():
                assert 100 * metrics[protocol].score == pytest.approx(value, abs=0.005), (
                    rule,
                    name,
                    protocol,
                )
            assert metrics["open_containment_bamco"].score >= metrics["open_exact"].score
