"""``torch.compile(fullgraph=True)`` of the fused ops as the very first call of a process.

The backend probes (loading ``bamco_fast._C``, importing Triton) and the op registrations happen on the
first call; under compilation they must not break the graph. Each case therefore runs in a fresh
interpreter that has imported nothing of the library's ops before compiling, and compares the compiled
loss and gradients with eager ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from bamco_fast.ops import bamco_loss as op

_HAS_CPP = op.backends()[1].availability() is None

_LOSS = """
import torch, torch.nn.functional as F
from bamco_fast import functional
gen = torch.Generator().manual_seed(0)
f = F.normalize(torch.randn(6, 2, 16, generator=gen), dim=-1).to(DEVICE)
p = F.normalize(torch.randn(3, 16, generator=gen), dim=-1).to(DEVICE)
y = torch.randint(0, 3, (6,), generator=gen).to(DEVICE)
def step(f, y, p):
    return functional.bamco_loss(f * 1.0, y, p, 0.07, backend=BACKEND) * 2
compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
a = f.clone().requires_grad_()
loss = compiled(a, y, p)
loss.backward()
b = f.clone().requires_grad_()
ref = step(b, y, p)
ref.backward()
torch.testing.assert_close(loss, ref)
torch.testing.assert_close(a.grad, b.grad)
print("OK", float(loss))
"""

_BLOCK = """
import torch
from bamco_fast import functional
gen = torch.Generator().manual_seed(0)
c, e = 2, 4
x = torch.randn(1, c, 4, 5, 6, generator=gen).to(DEVICE)
params = [
    torch.randn(3, c, 3, 3, 3, generator=gen) * 0.3,
    1 + 0.1 * torch.randn(3, c, generator=gen),
    0.1 * torch.randn(3, c, generator=gen),
    torch.randn(e, 3 * c, generator=gen) * 0.3,
    torch.randn(c, e, generator=gen) * 0.3,
    torch.full((6,), 0.25),
]
params = [t.to(DEVICE) for t in params]
def step(x, *params):
    return functional.dilated_depthwise_block(x * 1.0, *params, backend=BACKEND).square().mean()
compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
a = x.clone().requires_grad_()
loss = compiled(a, *params)
loss.backward()
b = x.clone().requires_grad_()
ref = step(b, *params)
ref.backward()
torch.testing.assert_close(loss, ref)
torch.testing.assert_close(a.grad, b.grad)
print("OK", float(loss))
"""


def _run(script: str, backend: str | None, interpret: bool, device: str = "cpu") -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "BAMCO_FAST_BACKEND")}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    code = textwrap.dedent(script).replace("BACKEND", repr(backend)).replace("DEVICE", repr(device))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-4000:]


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
@pytest.mark.parametrize("backend", [None, "cpp"])
def test_loss_cpu_first_call_compiles(backend):
    """Automatic choice probes Triton and loads the extension inside the traced call; cpp loads it."""
    _run(_LOSS, backend, interpret=False)


@pytest.mark.parametrize("script", [_LOSS, _BLOCK], ids=["loss", "dilated_depthwise_block"])
def test_triton_first_call_compiles(script):
    """On a GPU the real kernels; without one the interpreter (the op is opaque to the compiler there)."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        _run(script, "triton", interpret=False, device="cuda")
    else:
        _run(script, "triton", interpret=True)


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
def test_dilated_depthwise_block_cpp_first_call_compiles():
    _run(_BLOCK, "cpp", interpret=False)
