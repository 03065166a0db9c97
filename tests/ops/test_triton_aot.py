"""The Triton kernels compile for sm_90 (H100/H200) with the launch parameters a GPU call would use.

The interpreter runs the kernels' Python semantics but never the compiler, and cannot run bf16 at all.
Here the compiler runs for real, without a GPU (:mod:`bamco_fast.kernels.aot`): every launch the host
code plans for a 132-SM card is compiled to a cubin, and its resources are checked: shared memory within
the card's per-block limit, no register spills in the hot kernels, tensor-core instructions for 16-bit
inputs and full-precision FMA for fp32 inputs (the fp32 tolerances assume no TF32). It runs in fresh
processes without ``TRITON_INTERPRET`` (the interpreter replaces the jitted functions), with a private
Triton cache so the compiler really runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton", reason="compiling Triton kernels needs triton")

from bamco_fast.kernels import aot

TARGET = aot.TARGETS["sm_90"]
HOT = ("_fwd_kernel", "_grad_kernel", "_dw_fwd_kernel", "_dw_bwd_kernel")

_LAUNCHES_AND_ENCODER = """
import json, sys
from dataclasses import asdict
import torch
from bamco_fast.kernels import aot

target = aot.TARGETS["sm_90"]
launches = {}
for case in ("loss-b48", "loss-b32768"):
    with aot.record_launches(target) as recorded:
        aot.CASES[case][0](torch.bfloat16)
    launches[case] = [launch.kernel.fn.__name__ for launch in recorded]
shape = aot.encoder_block_shapes(1)[0]
with aot.record_launches(target) as recorded:
    aot.encoder_block_call(shape, torch.bfloat16)
reports = aot.compile_launches(recorded, target, "encoder-block0", "bfloat16")
json.dump({"launches": launches, "shape": shape, "reports": [asdict(r) for r in reports]}, open(sys.argv[1], "w"))
"""


# The ops as a GPU process registers them (no TRITON_INTERPRET): functionalised and traced with fake tensors
# (what torch.compile's AOT stage does), each must show its kernel launches, not one opaque op call, and
# the same launches the AOT compiler records (and compiles for sm_90) from its host code.
_GPU_OPS_TRACE = """
import json, logging, sys
import torch
from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table
from torch._subclasses.functional_tensor import dispatch_functionalize
from torch.fx.experimental.proxy_tensor import make_fx
from bamco_fast.kernels import aot, bamco_loss, dilated_depthwise_block as block
from bamco_fast.ops import bamco_loss as loss_op, dilated_depthwise_block as block_op

# Without a GPU driver Triton cannot say which inputs a kernel writes; torch then assumes all (and logs).
logging.getLogger("torch._higher_order_ops.triton_kernel_wrap").setLevel(logging.ERROR)
target = aot.TARGETS["sm_90"]
loss_fwd = loss_op.triton_op()
block_fwd, block_bwd = block_op.triton_op(), block.registered_ops()[1]
shape = (1, 2, 4, 5, 6)
x = torch.zeros(shape)
params = [torch.zeros(3, 2, 3, 3, 3), torch.ones(3, 2), torch.zeros(3, 2), torch.zeros(4, 6), torch.zeros(2, 4)]
params.append(torch.full((6,), 0.25))
features, labels, prototypes = torch.zeros(48, 3, 16), torch.zeros(48, dtype=torch.int64), torch.zeros(5, 16)
calls = {
    "loss": (lambda *a: loss_fwd(*a, 0.07, 1, True), (features, labels, prototypes)),
    "block": (lambda *a: block_fwd(*a, 1e-5), (x, *params)),
    "block_backward": (lambda *a: block_bwd(*a, 1e-5), (x, x, *params)),
}
out = {}
for name, (fn, args) in calls.items():
    with aot.record_launches(target):  # the GPU launch plan (tiles for 132 SMs), as the recorder uses
        graph = make_fx(dispatch_functionalize(fn), tracing_mode="fake")(*args)
    nodes = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
    traced = [
        kernel_side_table.get_kernel(n.kwargs["kernel_idx"]).fn.__name__
        for n in graph.graph.nodes
        if "triton_kernel_wrapper" in str(n.target)
    ]
    with aot.record_launches(target) as recorded:
        fn(*args)  # eager: the host code runs, its launches are recorded instead of run
    out[name] = {
        "traced": traced,
        "recorded": [launch.kernel.fn.__name__ for launch in recorded],
        "opaque": [n for n in nodes if n.startswith("bamco_fast.")],
    }
json.dump(out, open(sys.argv[1], "w"))
"""


_TUNING_CANDIDATES = """
import json, sys
from dataclasses import asdict
import torch
sys.path.insert(0, "benchmarks")
from gpu_tune import CANDIDATES
from bamco_fast.kernels import aot, bamco_loss

target = aot.TARGETS["sm_90"]
out = {}
for name, overrides in CANDIDATES.items():
    with bamco_loss.launch_settings(**overrides), aot.record_launches(target) as recorded:
        aot.CASES["loss-b32768"][0](torch.bfloat16)
    hot = [launch for launch in recorded if launch.kernel.fn.__name__ in ("_fwd_kernel", "_grad_kernel")]
    out[name] = [asdict(r) for r in aot.compile_launches(hot, target, name, "bfloat16")]
json.dump(out, open(sys.argv[1], "w"))
"""


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "BAMCO_FAST_BACKEND")}
    env["TRITON_CACHE_DIR"] = cache
    return env


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(cmd: list[str], folder, cwd: str | None = None) -> tuple[subprocess.Popen, object]:
    """Start ``cmd`` in a fresh process (no interpreter, a private Triton cache under ``folder``), its
    output in ``folder``."""
    folder.mkdir(parents=True)
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=_env(str(folder / "cache")))
    return proc, folder


def _script(script: str, folder) -> list[str]:
    """The command that runs ``script``, which writes JSON to ``folder / "out.json"``."""
    return [sys.executable, "-c", textwrap.dedent(script), str(folder / "out.json")]


def _finish(job: tuple[subprocess.Popen, object]) -> tuple[str, object]:
    """Wait for a :func:`_start` job; its stdout and the parsed ``out.json`` (exit code 0 asserted)."""
    proc, folder = job
    proc.wait(timeout=600)
    stdout = (folder / "stdout.txt").read_text()
    stderr = (folder / "stderr.txt").read_text()
    assert proc.returncode == 0, (stdout[-3000:], stderr[-4000:])
    return stdout, json.loads((folder / "out.json").read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, tuple[str, object]]:
    """Every compile job of this module, started together (independent processes: on two cores they take
    about half the time of one after the other): ``{job: (stdout, JSON output)}``."""
    root = tmp_path_factory.mktemp("aot")
    loss_cmd = [sys.executable, "-m", "bamco_fast.kernels.aot", "--target", "sm_90", "--case", "loss-b48"]
    loss_cmd += ["loss-b32768", "--dtype", "bfloat16", "float32", "--json", str(root / "loss" / "out.json")]
    jobs = {
        "loss": _start(loss_cmd, root / "loss"),
        "planned": _start(_script(_LAUNCHES_AND_ENCODER, root / "planned"), root / "planned"),
        "tuning": _start(_script(_TUNING_CANDIDATES, root / "tuning"), root / "tuning", cwd=REPO_ROOT),
        "trace": _start(_script(_GPU_OPS_TRACE, root / "trace"), root / "trace"),
    }
    try:
        return {name: _finish(job) for name, job in jobs.items()}
    finally:
        for proc, _ in jobs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def loss_reports(compiled) -> list[dict]:
    stdout, data = compiled["loss"]
    assert "| loss-b48 | bfloat16 | _fwd_kernel |" in stdout  # the table is printed
    assert data["target"]["name"] == "sm_90"
    return data["kernels"]


@pytest.fixture(scope="module")
def planned(compiled) -> dict:
    return compiled["planned"][1]


def _find(reports: list[dict], case: str, dtype: str, kernel: str) -> dict:
    found = [r for r in reports if (r["case"], r["dtype"], r["kernel"]) == (case, dtype, kernel)]
    assert len(found) == 1, (case, dtype, kernel, [(r["case"], r["dtype"], r["kernel"]) for r in reports])
    return found[0]


def test_small_batch_plans_three_launches_on_gpu(planned):
    # Forward + backward at B=48 on a GPU: forward, finish, gradient (class counts inline).
    assert planned["launches"]["loss-b48"] == ["_fwd_kernel", "_finish_kernel", "_grad_kernel"]
    # Large batches count the classes in a kernel of their own first.
    assert planned["launches"]["loss-b32768"] == [
        "_count_kernel",
        "_fwd_kernel",
        "_finish_kernel",
        "_grad_kernel",
    ]


def test_every_loss_kernel_compiles_for_each_dtype(loss_reports):
    for case, kernels in (
        ("loss-b48", ("_fwd_kernel", "_finish_kernel", "_grad_kernel")),
        ("loss-b32768", ("_count_kernel", "_fwd_kernel", "_finish_kernel", "_grad_kernel")),
    ):
        for dtype in ("bfloat16", "float32"):
            for kernel in kernels:
                if kernel == "_count_kernel" and dtype == "float32":
                    continue  # labels only: one specialisation, compiled with the bf16 case
                report = _find(loss_reports, case, dtype, kernel)
                assert report["registers"] > 0


@pytest.mark.parametrize("source", ["loss", "encoder"])
def test_shared_memory_fits_and_hot_kernels_do_not_spill(source, loss_reports, planned):
    reports = loss_reports if source == "loss" else planned["reports"]
    assert reports
    for r in reports:
        assert 0 <= r["shared"] <= TARGET.max_shared, r
        assert r["registers"] <= 255, r
        if r["kernel"] in HOT:
            assert (r["spill_stores"], r["spill_loads"]) == (0, 0), r


def test_dots_use_tensor_cores_for_bf16_and_full_fp32_otherwise(loss_reports):
    for case in ("loss-b48", "loss-b32768"):
        for kernel in ("_fwd_kernel", "_grad_kernel"):
            assert _find(loss_reports, case, "bfloat16", kernel)["mma"] == "wgmma"
            assert _find(loss_reports, case, "float32", kernel)["mma"] == "fma"
        assert _find(loss_reports, case, "bfloat16", "_finish_kernel")["mma"] == "-"


def test_encoder_block_kernels_all_compile_in_bf16(planned):
    names = {r["kernel"] for r in planned["reports"]}
    assert names == {
        "_dw_fwd_kernel",
        "_norm_act_kernel",
        "_residual_kernel",
        "_bwd_partials_kernel",
        "_bwd_apply_kernel",
        "_dw_bwd_kernel",
    }
    assert tuple(planned["shape"])[1:] == (12, 36, 84, 84)  # the first block: f=12 channels, 36x84x84
    assert all(r["dtype"] == "bfloat16" and r["mma"] == "-" for r in planned["reports"])


def test_gpu_ops_trace_to_the_kernels_the_compiler_builds(compiled):
    """On a GPU both Triton ops are ``triton_op``s: a trace shows their kernel launches, one by one."""
    data = compiled["trace"][1]
    assert data["loss"]["traced"] == ["_fwd_kernel", "_finish_kernel", "_grad_kernel"]
    assert (
        data["block"]["traced"][0] == "_dw_fwd_kernel" and data["block"]["traced"][-1] == "_norm_act_kernel"
    )
    assert data["block_backward"]["traced"][-1] == "_dw_bwd_kernel"
    for name, op in data.items():
        assert op["opaque"] == [], name  # no call of the op itself is left in the graph
        assert op["traced"] == op["recorded"], name


def test_cli_refuses_to_run_under_the_interpreter(monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert aot.main(["--case", "loss-b48"]) == 2
    assert "TRITON_INTERPRET" in capsys.readouterr().err


def test_mma_kind_reads_the_dot_lowering():
    assert aot.mma_kind("%0 = tt.dot %a, %b", "wgmma.mma_async.sync.aligned.m64n64k16") == "wgmma"
    assert aot.mma_kind("%0 = tt.dot %a, %b", "mma.sync.aligned.m16n8k16.row.col") == "mma"
    assert aot.mma_kind("%0 = tt.dot %a, %b", "fma.rn.f32 %f1, %f2, %f3, %f4;") == "fma"
    assert aot.mma_kind("tt.load", "fma.rn.f32 %f1, %f2, %f3, %f4;") == "-"


def test_gpu_tune_candidates_compile_without_spills(compiled):
    """Every tile candidate the GPU sweep times (benchmarks/gpu_tune.py) is a valid sm_90 bf16 build."""
    data = compiled["tuning"][1]
    assert "default" in data and len(data) >= 2
    for name, reports in data.items():
        assert sorted(r["kernel"] for r in reports) == ["_fwd_kernel", "_grad_kernel"], name
        for r in reports:
            assert r["shared"] <= TARGET.max_shared, (name, r)
            assert (r["spill_stores"], r["spill_loads"]) == (0, 0), (name, r)
            assert r["mma"] in ("wgmma", "mma"), (name, r)  # tensor cores (mma.sync below 64-row tiles)
