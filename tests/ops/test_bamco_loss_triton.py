"""Triton backend of the balanced contrastive loss against the float64 reference.

Without a GPU the kernels run in the Triton interpreter (``TRITON_INTERPRET=1``, set by the test
configuration before ``bamco_fast.kernels`` is imported) on small CPU shapes. fp16 and bf16 run there too:
the interpreter's own ``tl.dot`` misreads bf16, so under it the kernels widen 16-bit dot operands to fp32
(exact products, as on tensor cores; see ``_mma`` in the kernels); loads, stores, the rounding of the
gradient tile to the input dtype and the 16-bit outputs are the GPU code path. The ``cuda`` tests check
all three dtypes on a card, tensor cores included.
"""

import contextlib
import dataclasses
import itertools

import pytest
import tolerance_checks
import torch
import torch.nn.functional as F

triton = pytest.importorskip("triton")

from bamco_fast import functional  # noqa: E402
from bamco_fast.ops import bamco_loss as op_module  # noqa: E402
from bamco_fast.ops._backends import triton_interpreted  # noqa: E402
from bamco_fast.ops.bamco_loss import bamco_loss_reference  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
INTERPRETED = triton_interpreted()
DEVICE = "cuda" if HAS_CUDA else "cpu"

pytestmark = pytest.mark.skipif(
    not HAS_CUDA and not INTERPRETED, reason="needs a CUDA device or TRITON_INTERPRET=1 (Triton interpreter)"
)

kernel = pytest.importorskip("bamco_fast.kernels.bamco_loss")


@pytest.fixture
def tuning():
    """``tuning(**settings)`` applies launch settings for the rest of one test (restored afterwards)."""
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(kernel.launch_settings(**settings))


def make_inputs(batch, views, classes, dim, labels="random", seed=0, device=DEVICE):
    """L2-normalised float32 features (B, V, D), prototypes (C, D) and int64 labels (B,)."""
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, views, dim, generator=gen, dtype=torch.float64), dim=-1)
    prototypes = F.normalize(torch.randn(classes, dim, generator=gen, dtype=torch.float64), dim=-1)
    if labels == "random":
        y = torch.randint(0, classes, (batch,), generator=gen)
    elif labels == "absent":  # only the lower half of the classes occurs
        y = torch.randint(0, max(1, classes // 2), (batch,), generator=gen)
    elif labels == "one_class":
        y = torch.full((batch,), classes - 1, dtype=torch.int64)
    elif labels == "singletons":  # every sample its own class (needs C >= B)
        y = torch.randperm(classes, generator=gen)[:batch]
    else:
        raise ValueError(labels)
    return features.float().to(device), y.to(device), prototypes.float().to(device)


def loss_and_grads(fn, features, prototypes, upstream):
    """Loss and the gradients of ``upstream * loss`` w.r.t. features and prototypes."""
    f = features.detach().clone().requires_grad_(True)
    p = prototypes.detach().clone().requires_grad_(True)
    loss = fn(f, p)
    (loss * upstream).backward()
    return loss.detach(), f.grad, p.grad


def triton_fn(labels, temperature, mode):
    if mode == "views":
        return lambda f, p: functional.bamco_loss(f, labels, p, temperature, backend="triton")
    return lambda f, p: functional.bamco_multimodal_loss(
        list(f.unbind(1)), labels, p, temperature, backend="triton"
    )


def reference_fn(labels, temperature, mode):
    return lambda f, p: bamco_loss_reference(f, labels, p, temperature, mode)


_NAMES = ("loss", "grad features", "grad prototypes")


def assert_within(dtype, fast, reference, exact, floor_scale=1.0):
    """(loss, grad features, grad prototypes) of the fast path within ``op_module.TOLERANCES[dtype]``."""
    named = [dict(zip(_NAMES, (t.cpu() for t in r))) for r in (fast, reference, exact)]
    tolerance_checks.assert_within(op_module.TOLERANCES, dtype, *named, floor_scale=floor_scale)


def judge(fn, labels, temperature, mode, f_in, p_in, upstream, floor_scale=1.0):
    """``fn``'s loss and gradients against the reference in the inputs' dtype and in float64 (same
    rounded inputs)."""
    fast = loss_and_grads(fn, f_in, p_in, upstream)
    in_dtype = loss_and_grads(
        lambda f, p: bamco_loss_reference(f, labels, p, temperature, mode, upcast=False), f_in, p_in, upstream
    )
    exact = loss_and_grads(reference_fn(labels, temperature, mode), f_in.double(), p_in.double(), upstream)
    assert_within(f_in.dtype, fast, in_dtype, exact, floor_scale=floor_scale)
    return fast


def check_against_reference(features, labels, prototypes, temperature, mode, dtype, seed=0):
    """Run the Triton op in ``dtype`` and judge it by ``op_module.TOLERANCES`` (see :func:`judge`)."""
    gen = torch.Generator().manual_seed(seed + 1)
    upstream = float(torch.rand((), generator=gen)) * 2.0 + 0.5
    f_in, p_in = features.to(dtype), prototypes.to(dtype)
    loss, gf, gp = judge(
        triton_fn(labels, temperature, mode), labels, temperature, mode, f_in, p_in, upstream
    )
    assert loss.dtype == dtype and loss.dim() == 0
    assert gf.dtype == dtype and gf.shape == features.shape
    assert gp.dtype == dtype and gp.shape == prototypes.shape


# (B, V, C, D, labels, mode) at interpreter-friendly sizes.
CASES = [
    (1, 2, 1, 16, "random", "views"),
    (1, 3, 5, 40, "random", "pairs"),
    (2, 3, 5, 40, "random", "views"),
    (7, 2, 5, 16, "absent", "views"),
    (7, 3, 40, 40, "singletons", "pairs"),
    (7, 2, 40, 16, "singletons", "views"),
    (33, 2, 5, 40, "one_class", "views"),
    (33, 3, 40, 16, "random", "views"),
    (33, 3, 5, 40, "absent", "pairs"),
    (33, 2, 1, 16, "one_class", "pairs"),
    (5, 8, 3, 16, "random", "views"),  # many views (multi-crop)
    (5, 9, 3, 16, "random", "pairs"),
]


@pytest.mark.parametrize(("batch", "views", "classes", "dim", "labels", "mode"), CASES)
def test_matches_reference_fp32(batch, views, classes, dim, labels, mode):
    features, y, prototypes = make_inputs(batch, views, classes, dim, labels, seed=batch + dim)
    check_against_reference(features, y, prototypes, 0.1, mode, torch.float32, seed=batch)


@pytest.mark.parametrize(("batch", "views", "classes", "dim", "labels", "mode"), CASES)
def test_matches_reference_bf16(batch, views, classes, dim, labels, mode):
    features, y, prototypes = make_inputs(batch, views, classes, dim, labels, seed=batch + dim)
    check_against_reference(features, y, prototypes, 0.07, mode, torch.bfloat16, seed=batch)


@pytest.mark.parametrize(
    ("batch", "views", "classes", "dim", "labels", "mode"),
    [(7, 3, 5, 40, "random", "pairs"), (33, 2, 40, 16, "absent", "views")],
)
def test_matches_reference_fp16(batch, views, classes, dim, labels, mode):
    features, y, prototypes = make_inputs(batch, views, classes, dim, labels, seed=3)
    check_against_reference(features, y, prototypes, 0.07, mode, torch.float16, seed=3)


@pytest.mark.parametrize("views", [2, 4])
def test_pairs_enumerate_every_view_pair(views):
    """Mode 1 covers each unordered pair once (odd and even V use different enumeration branches)."""
    features, y, prototypes = make_inputs(9, views, 5, 16, seed=11)
    check_against_reference(features, y, prototypes, 0.2, "pairs", torch.float32)


@pytest.mark.parametrize("mode", ["views", "pairs"])
@pytest.mark.parametrize("inline_counts", [True, False])
def test_split_kv_and_count_paths(tuning, mode, inline_counts):
    """Several key splits (merged by the finish kernel) and both class-count paths give the same result."""
    features, y, prototypes = make_inputs(33, 3, 40, 16, seed=5)
    tuning(
        num_splits=4, block_m=16, block_n=16, block_m_grad=16, block_n_grad=16, inline_counts=inline_counts
    )
    plan = kernel.plan_launches(features.device, torch.float32, 33, 3 if mode == "views" else 2, 1, 40, 16)
    assert plan.num_splits == 4 and plan.inline_counts is inline_counts
    check_against_reference(features, y, prototypes, 0.1, mode, torch.float32, seed=5)


@pytest.mark.parametrize(
    ("batch", "views", "classes", "dim", "labels", "mode", "dtype"),
    [
        # The training objective at B=48: 3 view pairs, 7 key splits, two 256-wide D slices.
        (48, 3, 285, 512, "random", "pairs", torch.float32),
        # Above INLINE_COUNT_MAX_BATCH: the count kernel, 1200 anchors in 128-row blocks.
        (600, 2, 100, 64, "absent", "views", torch.float32),
        (48, 3, 285, 128, "singletons", "pairs", torch.float16),
        (48, 2, 1450, 64, "random", "views", torch.bfloat16),
    ],
)
def test_gpu_launch_plan_matches_reference(tuning, batch, views, classes, dim, labels, mode, dtype):
    """The exact launches planned for a 132-SM card (GPU tiles, key splits, D slices, warps), run by the
    interpreter: the same host path as on an H100, only the kernels are interpreted."""
    tuning(plan_for_sms=132)
    group = views if mode == "views" else 2
    groups = 1 if mode == "views" else views * (views - 1) // 2
    plan = kernel.plan_launches(torch.device("cpu"), dtype, batch, group, groups, classes, dim)
    assert plan.on_gpu
    assert (plan.block_m, plan.block_n, plan.block_m_grad, plan.block_n_grad) == (128, 64, 64, 32)
    assert plan.block_do == min(dim, 256) and plan.num_warps == 8
    assert plan.inline_counts is (batch <= kernel.INLINE_COUNT_MAX_BATCH)
    if batch == 48:  # small batch: the keys are split down to one 64-row tile per program
        assert plan.keys_per_split == 64
        assert plan.num_splits == -(-group * batch // 64) + -(-classes // 64)
    features, y, prototypes = make_inputs(batch, views, classes, dim, labels, seed=batch + dim)
    check_against_reference(features, y, prototypes, 0.07, mode, dtype, seed=batch)


def test_launch_settings_are_scoped_frozen_and_checked():
    before = kernel.current_settings()
    with (
        pytest.raises(RuntimeError, match="inside"),
        kernel.launch_settings(block_n=16, num_splits=2) as chosen,
    ):
        assert chosen.block_n == 16 and kernel.current_settings().num_splits == 2
        with kernel.launch_settings(block_n=32):  # nested: overrides on top of the outer block
            assert kernel.current_settings() == dataclasses.replace(chosen, block_n=32)
        assert kernel.current_settings() is chosen
        raise RuntimeError("inside")
    assert kernel.current_settings() is before == kernel.LaunchSettings()
    with pytest.raises(KeyError, match="block_dd"), kernel.launch_settings(block_dd=16):
        pass
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.block_n = 8  # type: ignore[misc]
    with pytest.raises(ValueError, match="fp32_precision"):
        kernel.LaunchSettings(fp32_precision="bf16x3")
    assert kernel.current_settings() is before


def test_split_count_larger_than_key_tiles_is_clamped(tuning):
    features, y, prototypes = make_inputs(5, 2, 3, 16, seed=6)
    tuning(num_splits=50)
    plan = kernel.plan_launches(features.device, torch.float32, 5, 2, 1, 3, 16)
    assert 1 <= plan.num_splits <= 2
    check_against_reference(features, y, prototypes, 0.1, "views", torch.float32, seed=6)


@pytest.mark.parametrize("temperature", [0.002, 5.0])
def test_extreme_temperatures_are_stable(tuning, temperature):
    """Online max: no fixed 1/T shift, so tiny T (logits up to 500) neither overflows nor underflows; the row
    maximum and log2 of the sum are kept apart, so the gradient meets the same floor as at T = 0.1."""
    features, y, prototypes = make_inputs(7, 2, 5, 16, seed=7)
    tuning(num_splits=2, block_n=16)
    fn = triton_fn(y, temperature, "views")
    loss, gf, gp = judge(fn, y, temperature, "views", features, prototypes, 1.0)
    assert torch.isfinite(loss) and torch.isfinite(gf).all() and torch.isfinite(gp).all()


# T = 0.002 (logits of size 500) over a spread of the cases: the forward and gradient kernels tile the keys
# differently and split them, so this also checks that the recomputed exponents match the stored statistics.
@pytest.mark.parametrize(("batch", "views", "classes", "dim", "labels", "mode"), CASES[1:-1:2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_matches_reference_at_tiny_temperature(tuning, batch, views, classes, dim, labels, mode, dtype):
    features, y, prototypes = make_inputs(batch, views, classes, dim, labels, seed=batch + 2 * dim)
    tuning(num_splits=2, block_n=16)
    check_against_reference(features, y, prototypes, 0.002, mode, dtype, seed=batch + 1)


def test_no_grad_path_returns_empty_gradients():
    features, y, prototypes = make_inputs(7, 3, 5, 16, seed=8)
    op = op_module.triton_op()
    loss, gf, gp = op(features, y, prototypes, 0.1, 1, False)
    assert gf.shape == (0,) and gp.shape == (0,)
    exact = bamco_loss_reference(features.double(), y, prototypes.double(), 0.1, "pairs")
    in_dtype = bamco_loss_reference(features, y, prototypes, 0.1, "pairs")
    assert_within(torch.float32, (loss,), (in_dtype,), (exact,))
    loss_g, gf_g, gp_g = op(features, y, prototypes, 0.1, 1, True)
    assert gf_g.shape == features.shape and gp_g.shape == prototypes.shape
    assert loss_g.item() == loss.item()
    with torch.no_grad():
        no_grad_loss = functional.bamco_loss(
            features.requires_grad_(True), y, prototypes, 0.1, backend="triton"
        )
    assert not no_grad_loss.requires_grad


def test_deterministic(tuning):
    """No atomics: two calls give bitwise identical loss and gradients, also with split keys."""
    features, y, prototypes = make_inputs(33, 2, 5, 16, seed=9)
    tuning(num_splits=3, block_n=16)
    op = op_module.triton_op()
    first = op(features, y, prototypes, 0.1, 0, True)
    second = op(features, y, prototypes, 0.1, 0, True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_launch_count_at_small_batch(monkeypatch):
    """B=48: forward plus gradient takes 3 kernel launches (2 without gradient)."""
    features, y, prototypes = make_inputs(48, 2, 5, 16, seed=10)
    launched = []
    real_wrap = torch.library.wrap_triton

    def counting_wrap(kernel_fn):
        launched.append(getattr(kernel_fn, "__name__", None) or getattr(kernel_fn.fn, "__name__", "?"))
        return real_wrap(kernel_fn)

    monkeypatch.setattr(torch.library, "wrap_triton", counting_wrap)
    op = op_module.triton_op()
    op(features, y, prototypes, 0.1, 0, True)
    assert len(launched) == 3
    launched.clear()
    op(features, y, prototypes, 0.1, 0, False)
    assert len(launched) == 2


def test_bad_mode_is_rejected():
    features, y, prototypes = make_inputs(3, 2, 2, 16)
    with pytest.raises(ValueError, match="mode"):
        torch.ops.bamco_fast.bamco_loss_triton.default(features, y, prototypes, 0.1, 2, False)


@pytest.mark.parametrize("compute_grad", [False, True])
def test_opcheck(compute_grad):
    """torch.library.opcheck of the registered op (autograd attached).

    Under the Triton interpreter ``wrap_triton`` returns the plain interpreted kernel, which cannot be
    captured into an AOT graph, so ``test_aot_dispatch_dynamic`` is only run on CUDA; schema, autograd
    registration and fake-tensor propagation are checked everywhere.
    """
    op = op_module.triton_op()
    features, y, prototypes = make_inputs(5, 2, 3, 16, seed=12)
    args = (
        features.requires_grad_(compute_grad),
        y,
        prototypes.requires_grad_(compute_grad),
        0.1,
        0,
        compute_grad,
    )
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    if HAS_CUDA and not INTERPRETED:
        utils = (*utils, "test_aot_dispatch_dynamic")
    torch.library.opcheck(op, args, test_utils=utils)


# --------------------------------------------------------------------------------------------------
# CUDA only
# --------------------------------------------------------------------------------------------------
CUDA_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize(("batch", "classes"), list(itertools.product([48, 1024], [28, 1450])))
@pytest.mark.parametrize("mode", ["views", "pairs"])
def test_cuda_matches_reference(dtype, batch, classes, mode):
    """Against float64 on the same rounded inputs, and no worse than 2x torch's own error in ``dtype``.

    torch's error is that of the reference evaluated in ``dtype`` without upcasting (the error a user
    gets from the pure-torch path); a floor of a few ulps of the result covers the case where torch is
    accidentally exact.
    """
    views = 2 if mode == "views" else 3
    features, y, prototypes = make_inputs(batch, views, classes, 512, seed=batch + classes, device="cuda")
    f_in, p_in = features.to(dtype), prototypes.to(dtype)
    judge(triton_fn(y, 0.07, mode), y, 0.07, mode, f_in, p_in, 1.0)


@pytest.mark.cuda
def test_cuda_opcheck_full():
    op = op_module.triton_op()
    features, y, prototypes = make_inputs(48, 2, 28, 64, seed=13, device="cuda")
    args = (features.requires_grad_(True), y, prototypes.requires_grad_(True), 0.1, 0, True)
    torch.library.opcheck(op, args)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_cuda_torch_compile_fullgraph(dtype):
    """``torch.compile(fullgraph=True)`` traces the op without graph breaks and matches eager."""
    features, y, prototypes = make_inputs(48, 2, 28, 512, seed=14, device="cuda")
    f_in, p_in = features.to(dtype), prototypes.to(dtype)

    def step(f, p):
        return functional.bamco_loss(f, y, p, 0.07, backend="triton") * 2.0

    compiled = torch.compile(step, fullgraph=True)
    compiled_results = loss_and_grads(compiled, f_in, p_in, 1.0)
    eager = loss_and_grads(step, f_in, p_in, 1.0)
    # Judged like eager: against float64 by op_module.TOLERANCES (the reference scaled by the same 2.0).
    in_dtype = loss_and_grads(
        lambda f, p: 2.0 * bamco_loss_reference(f, y, p, 0.07, upcast=False), f_in, p_in, 1.0
    )
    exact = loss_and_grads(
        lambda f, p: 2.0 * bamco_loss_reference(f, y, p, 0.07), f_in.double(), p_in.double(), 1.0
    )
    assert_within(dtype, compiled_results, in_dtype, exact)
    assert_within(dtype, eager, in_dtype, exact)
