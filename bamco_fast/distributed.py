"""All-gather helpers that keep the gradient, for losses whose anchors must see the global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of ranks in the default process group (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, rank order; the gradient flows back.

    The backward of the gather sums each rank's gradient into the owner's slice, so a loss computed on
    the gathered batch on every rank yields ``world_size`` times the single-process gradient on each
    rank's slice; averaging parameter gradients over ranks (as DistributedDataParallel does) then gives
    exactly the single-process gradient.

    Raises:
        ValueError: the ranks hold different batch sizes (``name`` is named in the message).
    """
    if world_size() == 1:
        return tensor
    _check_same_batch(tensor, name)
    return _GatherWithGrad.apply(tensor)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the gathered gradient over ranks and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_no_grad(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Concatenate ``tensor`` (e.g. labels) from every rank along dim 0, rank order, without gradient."""
    if world_size() == 1:
        return tensor
    _check_same_batch(tensor, name)
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _check_same_batch(tensor: torch.Tensor, name: str) -> None:
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    values = [int(s) for s in sizes]
    if len(set(values)) != 1:
        raise ValueError(
            f"gather_distributed: {name} must have the same batch size on every rank, got {values}"
        )
