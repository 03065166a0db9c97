"""Patch-pooling and vector projectors: pooling on the grid in row-major order, shapes, errors."""

from __future__ import annotations

import pytest
import torch

from bamco_fast.models.projectors import PatchPoolingProjector, VectorProjector


def _pool_loop(tokens: torch.Tensor, grid: tuple[int, int], pool: int) -> torch.Tensor:
    """Naive reference: average each pool x pool window of the row-major patch grid."""
    gh, gw = grid
    batch, _, width = tokens.shape
    out = torch.zeros(batch, (gh // pool) * (gw // pool), width, dtype=torch.float64)
    for i in range(gh // pool):
        for j in range(gw // pool):
            cells = [(pool * i + a) * gw + pool * j + b for a in range(pool) for b in range(pool)]
            out[:, i * (gw // pool) + j] = tokens[:, cells].double().mean(dim=1)
    return out


@pytest.mark.parametrize(("grid", "pool"), [((14, 14), 2), ((4, 6), 2), ((6, 3), 3), ((2, 2), 1)])
def test_patch_pooling_matches_loop(grid, pool):
    torch.manual_seed(0)
    proj = PatchPoolingProjector(in_dim=12, out_dim=20, grid=grid, pool=pool, hidden=16).double()
    tokens = torch.randn(3, grid[0] * grid[1], 12, dtype=torch.float64)
    pooled = _pool_loop(tokens, grid, pool)
    expected = proj.fc2(torch.nn.functional.gelu(proj.fc1(pooled)))
    out = proj(tokens)
    assert out.shape == (3, proj.num_tokens, 20)
    assert proj.num_tokens == (grid[0] // pool) * (grid[1] // pool)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_patch_pooling_published_shape_and_gradient():
    proj = PatchPoolingProjector(768, 64, (14, 14))
    tokens = torch.randn(2, 196, 768, requires_grad=True)
    out = proj(tokens)
    assert out.shape == (2, 49, 64)
    out.square().sum().backward()
    assert tokens.grad is not None and proj.fc1.weight.grad is not None


def test_patch_pooling_errors():
    with pytest.raises(ValueError, match="grid: expected both sides divisible by pool=2"):
        PatchPoolingProjector(8, 8, (7, 7))
    proj = PatchPoolingProjector(8, 8, (4, 4))
    with pytest.raises(ValueError, match=r"tokens: expected shape \(B, 16, 8\)"):
        proj(torch.randn(1, 15, 8))


def test_vector_projector_shapes_and_published_layers():
    proj = VectorProjector(512, 2048, tokens=1)
    linears = [m for m in proj.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024), (1024, 2048)]
    proj.eval()
    out = proj(torch.randn(4, 512))
    assert out.shape == (4, 1, 2048)
    assert (out >= 0).all()  # final ReLU, as published
    two = VectorProjector(8, 6, tokens=2, hidden=5)
    assert two(torch.randn(3, 8)).shape == (3, 2, 6)
    with pytest.raises(ValueError, match=r"vectors: expected shape \(B, 8\)"):
        two(torch.randn(3, 7))
    with pytest.raises(ValueError, match="tokens: expected at least 1"):
        VectorProjector(8, 6, tokens=0)
