"""Matching evaluation: top-k by string, full vs in-batch protocols, table formatting, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bamco_fast.matching import MatchingInputs, format_matching_table, match_accuracy, matching_scores

# 4 strings on the axes of R^4; queries point at chosen strings.
STRINGS = torch.eye(4)


def _q(*directions: int) -> torch.Tensor:
    return F.normalize(torch.stack([STRINGS[d] + 0.1 * STRINGS[(d + 1) % 4] for d in directions]), dim=-1)


def test_full_protocol_counts_top1_and_top5_against_distinct_targets():
    queries = _q(0, 1, 2, 0)  # query d is closest to string d, then to string d + 1
    targets = torch.tensor([0, 1, 3, 3])
    # candidates = the distinct targets {0, 1, 3}: string 2 is not one, so the third query's best
    # candidate is 3 (a hit); the last query ranks 0, 1, 3 (a hit only at top 3 and beyond)
    assert match_accuracy(queries, targets, STRINGS, ks=(1, 2, 5)) == {1: 0.75, 2: 0.75, 5: 1.0}


def test_full_protocol_ignores_batch_order_in_batch_does_not():
    gen = torch.Generator().manual_seed(0)
    strings = F.normalize(torch.randn(30, 8, generator=gen), dim=-1)
    targets = torch.randint(0, 30, (60,), generator=gen)
    queries = F.normalize(strings[targets] + 0.8 * torch.randn(60, 8, generator=gen), dim=-1)
    perm = torch.randperm(60, generator=gen)
    full = match_accuracy(queries, targets, strings)
    assert full == match_accuracy(queries[perm], targets[perm], strings)
    small = match_accuracy(queries, targets, strings, protocol="in-batch", batch_size=4)
    assert small[5] == 1.0  # at most 4 candidates per batch: every query's own string is in its top 5
    assert small[1] >= full[1]  # fewer distractors


def test_in_batch_duplicates_count_as_the_same_string():
    queries = _q(0, 0)
    targets = torch.tensor([0, 0])
    assert match_accuracy(queries, targets, STRINGS, protocol="in-batch", batch_size=2, ks=(1,)) == {1: 1.0}


def test_matching_scores_tasks_mean_and_table():
    text_index = torch.tensor([[0, 1, 2], [3, 1, 2]])
    inputs = MatchingInputs(image=_q(0, 3), strings=STRINGS, text_index=text_index, intra=_q(1, 1))
    scores = matching_scores(inputs)
    assert scores["image->entity/top1"] == 1.0 and scores["intra->definition/top1"] == 1.0
    assert scores["relation->entity/top5"] == 1.0  # one relation string, two entities: both ranked
    assert scores["relation->entity/top1"] == 0.5
    assert len(scores) == 9 * 2 + 2
    tasks = {k: v for k, v in scores.items() if not k.startswith("mean")}
    assert scores["mean"] == pytest.approx(sum(tasks.values()) / 18)
    assert scores["mean/no-intra"] == pytest.approx(sum(v for k, v in tasks.items() if "intra" not in k) / 12)
    no_intra = matching_scores(MatchingInputs(image=_q(0, 3), strings=STRINGS, text_index=text_index))
    assert "intra->entity/top1" not in no_intra
    table = format_matching_table({"untrained": no_intra, "BaMCo": scores})
    assert "image->entity/top1" in table and "intra->entity/top1" in table and "    -" in table
    assert table.splitlines()[-1].startswith("mean") and table.splitlines()[-2].startswith("mean/no-intra")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"text_index must be \(N, 3\)"):
        MatchingInputs(image=_q(0), strings=STRINGS, text_index=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"text_index entries must be in \[0, 4\)"):
        MatchingInputs(image=_q(0), strings=STRINGS, text_index=torch.tensor([[0, 1, 9]]))
    with pytest.raises(ValueError, match="protocol must be one of"):
        match_accuracy(_q(0), torch.tensor([0]), STRINGS, protocol="batch")
