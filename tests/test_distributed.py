"""gather_distributed: two gloo processes reproduce the single-process loss and gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from bamco_fast import functional

WORLD = 2
BATCH_PER_RANK = 5


def _inputs():
    gen = torch.Generator().manual_seed(3)
    features = F.normalize(
        torch.randn(WORLD * BATCH_PER_RANK, 3, 12, generator=gen, dtype=torch.float64), dim=-1
    )
    prototypes = F.normalize(torch.randn(4, 12, generator=gen, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, 4, (WORLD * BATCH_PER_RANK,), generator=gen)
    return features, labels, prototypes


def _worker(rank: int, port: int, backend: str, multimodal: bool, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        features, labels, prototypes = _inputs()
        rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
        local = features[rows].clone().requires_grad_()
        protos = prototypes.clone().requires_grad_()
        if multimodal:
            loss = functional.bamco_multimodal_loss(
                list(local.unbind(1)), labels[rows], protos, backend=backend, gather_distributed=True
            )
        else:
            loss = functional.bamco_loss(
                local, labels[rows], protos, backend=backend, gather_distributed=True
            )
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "grad": local.grad, "proto_grad": protos.grad}, f"{out_dir}/{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("multimodal", [False, True])
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_two_ranks_equal_single_process(tmp_path, backend, multimodal):
    from bamco_fast.ops import bamco_loss as op

    if backend == "cpp" and op.backends()[1].availability() is not None:
        pytest.skip("bamco_fast._C not built")
    mp.start_processes(
        _worker, args=(_free_port(), backend, multimodal, str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    features, labels, prototypes = _inputs()
    f = features.clone().requires_grad_()
    p = prototypes.clone().requires_grad_()
    if multimodal:
        loss = functional.bamco_multimodal_loss(list(f.unbind(1)), labels, p, backend="reference")
    else:
        loss = functional.bamco_loss(f, labels, p, backend="reference")
    loss.backward()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"{rank}.pt")
        rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
        torch.testing.assert_close(got["loss"], loss.detach())
        # The gather's backward sums every rank's contribution: each rank holds WORLD x its slice of the
        # single-process gradient, so DDP's average over ranks gives exactly the single-process gradient.
        torch.testing.assert_close(got["grad"] / WORLD, f.grad[rows])
        torch.testing.assert_close(got["proto_grad"], p.grad)
