"""A tiny regression task for the loop tests: exercises dropout, batch noise and a per-epoch data order."""

from __future__ import annotations

import random
import signal

import torch
from torch import nn

from bamco_fast.train.core.runtime import Runtime
from bamco_fast.train.core.task import Task

N_TRAIN, N_VAL, DIM = 48, 16, 6


class ToyTask(Task):
    """Linear regression with a small MLP; batches = a seeded permutation per epoch, this rank's slice."""

    selection_metric = "val_mse"
    selection_mode = "min"

    def __init__(
        self,
        runtime: Runtime,
        batch_size: int,
        seed: int = 0,
        interrupt_at: tuple[int, int] | None = None,
        noisy: bool = True,
    ):
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.randn(N_TRAIN + N_VAL, DIM, generator=gen)
        w = torch.randn(DIM, 1, generator=gen)
        self.y = self.x @ w + 0.1 * torch.randn(N_TRAIN + N_VAL, 1, generator=gen)
        torch.manual_seed(seed)
        self.model = nn.Sequential(
            nn.Linear(DIM, 16), nn.LayerNorm(16), nn.Dropout(0.1 if noisy else 0.0), nn.Linear(16, 1)
        )
        self.model.to(runtime.device)
        self.runtime = runtime
        self.batch = batch_size
        self.local = runtime.local_batch(batch_size)
        self.seed = seed
        self.interrupt_at = interrupt_at  # (epoch, index): raise KeyboardInterrupt when this batch is drawn
        self.noisy = noisy
        self.signal_at: int | None = None  # global step at which SIGINT is raised inside step_loss
        self.calls = 0

    def steps_per_epoch(self) -> int:
        return N_TRAIN // self.batch

    def train_batches(self, epoch: int, start: int):
        order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        for index in range(start, self.steps_per_epoch()):
            if self.interrupt_at == (epoch, index):
                self.interrupt_at = None
                raise KeyboardInterrupt
            rows = order[index * self.batch : (index + 1) * self.batch]
            rows = rows[self.runtime.rank * self.local : (self.runtime.rank + 1) * self.local]
            yield self.x[rows], self.y[rows]

    def step_loss(self, model, batch):
        x, y = batch
        self.calls += 1
        if self.signal_at == self.calls:
            signal.raise_signal(signal.SIGINT)
        if self.noisy:
            x = x + 0.01 * torch.randn_like(x) + 0.001 * random.random()  # global torch + python RNG
        pred = model(x)
        mse = ((pred - y) ** 2).mean()
        return {"loss": mse, "mse_loss": mse.detach()}

    def batch_size(self, batch) -> int:
        return int(batch[0].shape[0])

    def evaluate(self) -> dict[str, float]:
        torch.randn(100)  # consumes RNG: the loop must restore it
        random.random()
        pred = self.model(self.x[N_TRAIN:])
        return {"val_mse": float(((pred - self.y[N_TRAIN:]) ** 2).mean())}
