"""Run by ``torchrun`` in test_ddp.py: trains the toy task with the shared loop, saves rank 0's weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from toy_task import ToyTask

from bamco_fast.train.core.config import LoopConfig, OptimConfig, config_to_dict
from bamco_fast.train.core.loop import train
from bamco_fast.train.core.runtime import init_runtime, shutdown_runtime


def main(out: Path) -> None:
    torch.set_num_threads(1)
    runtime = init_runtime("cpu")
    try:
        loop = LoopConfig(epochs=2, batch_size=12, progress=False, tensorboard=False, plot=False)
        optim = OptimConfig(lr=1e-2, warmup_steps=2)
        task = ToyTask(runtime, loop.batch_size, noisy=False)
        cfg = {"loop": config_to_dict(loop), "optim": config_to_dict(optim)}
        result = train(task, loop, optim, out, config_dict=cfg, runtime=runtime)
        torch.save(
            {"weights": task.model.state_dict(), "world": runtime.world_size, "step": result.step},
            out / f"rank{runtime.rank}.pt",
        )
    finally:
        shutdown_runtime(runtime)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
