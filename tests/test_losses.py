"""Modules: LogitAdjustedCrossEntropy, NormedLinear, BaMCoObjective against their definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bamco_fast
from bamco_fast import functional


def test_logit_adjusted_ce_matches_definition():
    counts = [50, 5, 1, 20]
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    loss = bamco_fast.LogitAdjustedCrossEntropy(counts, tau=1.0)(logits, labels)
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    expected = F.cross_entropy(logits.double() + torch.log(prior), labels)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    loss_half = bamco_fast.LogitAdjustedCrossEntropy(counts, tau=0.5)(logits, labels)
    expected_half = F.cross_entropy(logits.double() + 0.5 * torch.log(prior), labels)
    torch.testing.assert_close(loss_half.double(), expected_half, rtol=1e-6, atol=1e-6)


def test_logit_adjusted_ce_label_dtypes():
    ce = bamco_fast.LogitAdjustedCrossEntropy([5, 3, 2])
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    expected = ce(logits, labels)
    for dtype in (torch.int32, torch.uint8):
        torch.testing.assert_close(ce(logits, labels.to(dtype)), expected)
    with pytest.raises(TypeError, match="labels must be integer class indices, got torch.float32"):
        ce(logits, labels.float())
    with pytest.raises(
        ValueError, match=r"labels must lie in \[0, 3\) \(C = logits.shape\[1\]\), got values in \[0, 3\]"
    ):
        ce(logits, torch.tensor([0, 3, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\), got \(4,\)"):
        ce(logits, labels[:4])


@pytest.mark.parametrize("counts", [[3, 0, 1], [-1, 2], [], [[1, 2]]])
def test_logit_adjusted_ce_rejects_bad_counts(counts):
    with pytest.raises(ValueError, match="class_counts"):
        bamco_fast.LogitAdjustedCrossEntropy(counts)


def test_normed_linear_is_scaled_cosine():
    layer = bamco_fast.NormedLinear(10, 4, scale=30)
    torch.testing.assert_close(layer.weight.norm(dim=0), torch.ones(4))
    x = torch.randn(5, 10)
    expected = 30 * F.cosine_similarity(x[:, :, None], layer.weight[None], dim=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="in_features"):
        bamco_fast.NormedLinear(0, 3)


def test_objective_combines_terms():
    counts = [4, 3, 2]
    objective = bamco_fast.BaMCoObjective(counts, temperature=0.1, ce_weight=0.3, contrastive_weight=0.7)
    logits = torch.randn(5, 3, requires_grad=True)
    mods = [F.normalize(torch.randn(5, 16), dim=-1).requires_grad_() for _ in range(3)]
    protos = F.normalize(torch.randn(3, 16), dim=-1).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1])
    out = objective(logits, mods, labels, protos)
    assert set(out) == {"ce_loss", "contrastive_loss", "loss"}
    ce = bamco_fast.LogitAdjustedCrossEntropy(counts)(logits, labels)
    con = functional.bamco_multimodal_loss(mods, labels, protos, 0.1, backend="reference")
    torch.testing.assert_close(out["ce_loss"], ce)
    torch.testing.assert_close(out["contrastive_loss"], con, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], 0.3 * ce + 0.7 * con, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert all(m.grad is not None and torch.isfinite(m.grad).all() for m in (*mods, protos, logits))


@pytest.mark.parametrize("shape", [(7,), (2, 3, 10), (2, 1, 3, 10)])
def test_normed_linear_any_leading_dims(shape):
    """Rows are normalised over the last dimension whatever the leading dims: (B, T, D) as T rows of (B, D)."""
    torch.set_num_threads(1)
    in_features = shape[-1] if len(shape) > 1 else 7
    layer = bamco_fast.NormedLinear(in_features, 4, scale=30)
    x = 5 * torch.randn(shape)
    out = layer(x)
    assert out.shape == (*shape[:-1], 4)
    flat = layer(x.reshape(-1, in_features)).reshape(*shape[:-1], 4)
    torch.testing.assert_close(out, flat)
    assert out.abs().max() <= 30 + 1e-4
    with pytest.raises(
        ValueError, match=r"input must have shape \(\.\.\., in_features\) = \(\.\.\., 7\), got \(2, 3\)"
    ):
        bamco_fast.NormedLinear(7, 4)(torch.randn(2, 3))


def test_objective_refuses_mismatched_class_counts():
    objective = bamco_fast.BaMCoObjective([4, 3, 2], backend="reference")
    labels = torch.tensor([0, 1, 2, 0])
    mods = [F.normalize(torch.randn(4, 8), dim=-1) for _ in range(2)]
    good_logits, good_protos = torch.randn(4, 3), F.normalize(torch.randn(3, 8), dim=-1)
    objective(good_logits, mods, labels, good_protos)
    with pytest.raises(
        ValueError, match=r"prototypes must be \(C, D\) with C = len\(class_counts\) = 3, got shape \(4, 8\)"
    ):
        objective(good_logits, mods, labels, F.normalize(torch.randn(4, 8), dim=-1))
    with pytest.raises(
        ValueError, match=r"cls_logits must be \(B, C\) with C = len\(class_counts\) = 3, got shape \(4, 5\)"
    ):
        objective(torch.randn(4, 5), mods, labels, good_protos)
    with pytest.raises(
        ValueError, match=r"LogitAdjustedCrossEntropy: logits must be \(B, C\) with C = .* = 3"
    ):
        bamco_fast.LogitAdjustedCrossEntropy([4, 3, 2])(torch.randn(4, 2), labels % 2)


@pytest.mark.parametrize("make", [bamco_fast.BaMCoLoss, bamco_fast.BaMCoObjective])
def test_loss_modules_check_backend_name_at_construction(make):
    args = () if make is bamco_fast.BaMCoLoss else ([2, 1],)
    for name in (None, "auto", "reference", "cpp", "triton"):
        make(*args, backend=name)
    with pytest.raises(
        ValueError,
        match=r"BaMCoLoss: backend must be None, 'auto' or one of \['triton', 'cpp', 'reference'\], got 'cuda'",
    ):
        make(*args, backend="cuda")
