"""DDP under torchrun: 2 gloo processes on CPU train to the same weights as one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from toy_task import ToyTask

from bamco_fast.train.core.config import LoopConfig, OptimConfig, config_to_dict
from bamco_fast.train.core.loop import train
from bamco_fast.train.core.runtime import Runtime

HERE = Path(__file__).resolve().parent
ATOL = 1e-6  # float32: DDP averages the two half-batch gradients, a different summation order


def test_two_gloo_processes_match_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(HERE / "ddp_worker.py"), str(tmp_path / "ddp"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1)]
    assert all(r["world"] == 2 and r["step"] == 8 for r in ranks)

    torch.set_num_threads(1)
    cpu = Runtime(device=torch.device("cpu"))
    loop = LoopConfig(epochs=2, batch_size=12, progress=False, tensorboard=False, plot=False)
    optim = OptimConfig(lr=1e-2, warmup_steps=2)
    task = ToyTask(cpu, loop.batch_size, noisy=False)
    cfg = {"loop": config_to_dict(loop), "optim": config_to_dict(optim)}
    train(task, loop, optim, tmp_path / "single", config_dict=cfg, runtime=cpu)
    single = task.model.state_dict()
    for key, value in single.items():
        for rank in ranks:
            torch.testing.assert_close(rank["weights"][key], value, atol=ATOL, rtol=0, msg=key)
    assert (tmp_path / "ddp" / "checkpoints" / "best.pt").is_file()
