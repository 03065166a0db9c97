"""The frozen-feature table a training run computes once equals the per-batch frozen features."""

from __future__ import annotations

import pytest
import torch
from vqa_fixtures import ANSWERS, QIDS, QUESTIONS, _images, _model

from bamco_fast.models.vqa_features import frozen_feature_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bank", ["question", "class"])
def test_table_rows_equal_the_batch_features(lm_dirs, ks, ks_dir, bank):
    model = _model(lm_dirs, ks, ks_dir, "llama", bank=bank).eval()
    images = _images(ks)
    keys = ["a", "b", "a", "c"]  # questions 0 and 2 share an image
    images[2] = images[0]
    by_key = {k: images[i] for i, k in enumerate(keys)}
    table = frozen_feature_table(
        model, keys, lambda ks_: torch.stack([by_key[k] for k in ks_]), QUESTIONS, QIDS, batch_size=2
    )
    assert len(table) == 4 and table.patches.shape[0] == 3  # one row of patch tokens per distinct image
    assert table.image_rows.tolist() == [0, 1, 0, 2]
    batch = model.frozen_features(images, QUESTIONS, qids=QIDS)
    rows = table.select([0, 1, 2, 3])
    assert torch.equal(rows.classes, batch.classes)
    for name in ("patches", "knowledge", "intra"):
        torch.testing.assert_close(getattr(rows, name), getattr(batch, name), rtol=1e-5, atol=1e-5, msg=name)
    some = table.select([3, 0])
    torch.testing.assert_close(some.knowledge, rows.knowledge[[3, 0]])
    model.train()
    torch.manual_seed(1)
    cached = model(None, QUESTIONS, ANSWERS, qids=QIDS, frozen=rows)["loss"]
    torch.manual_seed(1)
    direct = model(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"]
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="frozen: expected features of 4 questions, got 2"):
        model(None, QUESTIONS, ANSWERS, qids=QIDS, frozen=some)


def test_table_inputs_are_checked(lm_dirs, ks, ks_dir):
    model = _model(lm_dirs, ks, ks_dir, "gpt2")
    with pytest.raises(ValueError, match="expected equal non-zero lengths"):
        frozen_feature_table(model, ["a"], lambda keys: _images(ks, len(keys)), QUESTIONS, QIDS)
