"""dilated_depthwise_block: reference vs the published layer stack, cpp/triton vs reference, gradients, errors."""

from __future__ import annotations

import pytest
import tolerance_checks
import torch
import torch.nn.functional as F

from bamco_fast import functional
from bamco_fast.ops import dilated_depthwise_block as op
from bamco_fast.ops._backends import BackendUnavailableError, triton_interpreted

_HAS_CPP = op.backends()[1].availability() is None
_HAS_TRITON = op.backends()[0].availability() is None
_CPP = pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
_TRITON = pytest.mark.skipif(not _HAS_TRITON, reason="Triton unavailable (no CUDA and no TRITON_INTERPRET=1)")

# (B, c, e, D, H, W): odd sizes, one and two channels, volumes thinner than the largest dilation, and one
# stage-2-like case (c = 24, e = 48).
_SHAPES = [
    (2, 3, 6, 5, 7, 9),
    (1, 1, 2, 4, 3, 5),
    (2, 2, 3, 1, 6, 2),
    (3, 2, 4, 3, 3, 3),
    (1, 24, 48, 6, 10, 11),
]
_TRITON_SHAPES = [(2, 3, 6, 5, 7, 9), (1, 1, 2, 4, 3, 5), (1, 2, 4, 2, 9, 3)]


def make_inputs(batch, channels, expansion, depth, height, width, dtype=torch.float64, seed=0):
    """x and parameters drawn in float64 (then cast), with non-trivial affine and slopes."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)

    return [
        rnd(batch, channels, depth, height, width, scale=2.0, shift=0.5),
        rnd(3, channels, 3, 3, 3, scale=0.3),
        rnd(3, channels, scale=0.2, shift=1.0),
        rnd(3, channels, scale=0.2),
        rnd(expansion, 3 * channels, scale=0.4),
        rnd(channels, expansion, scale=0.4),
        rnd(6, scale=0.1, shift=0.25),
    ]


def output_and_grads(fn, inputs, upstream):
    leaves = [t.clone().requires_grad_() for t in inputs]
    y = fn(*leaves)
    # The block output feeds a further op (not the last op of the graph).
    loss = (torch.tanh(y) * upstream).sum()
    return y.detach(), torch.autograd.grad(loss, leaves)


def assert_tight(actual, exact, what):
    tolerance_checks.assert_tight(op.TOLERANCES, actual, exact, what)


def assert_within(dtype, fast, reference, exact):
    tolerance_checks.assert_within(op.TOLERANCES, dtype, fast, reference, exact)


def judged(backend, shape, dtype, device="cpu"):
    """Output and gradients of ``backend``, of the reference in ``dtype`` and of the float64 reference (on
    the same ``dtype``-rounded inputs), as name -> tensor dicts for :func:`assert_within`."""
    rounded = [t.to(dtype) for t in make_inputs(*shape)]
    upstream = torch.randn(
        shape[0], shape[1], *shape[3:], generator=torch.Generator().manual_seed(2), dtype=torch.float64
    ).to(dtype)
    names = ("output", *(f"grad {n}" for n in _NAMES))

    def run(fn, inputs, up):
        y, grads = output_and_grads(fn, inputs, up)
        return dict(zip(names, (y.cpu(), *(g.cpu() for g in grads))))

    exact = run(op.dilated_depthwise_block_reference, [t.double() for t in rounded], upstream.double())
    in_dtype = run(lambda *a: op.dilated_depthwise_block_reference(*a, upcast=False), rounded, upstream)
    fast = run(
        lambda *a: functional.dilated_depthwise_block(*a, backend=backend),
        [t.to(device) for t in rounded],
        upstream.to(device),
    )
    return fast, in_dtype, exact


_NAMES = ("x", "dw_weight", "norm_weight", "norm_bias", "pw1_weight", "pw2_weight", "prelu")


@pytest.mark.parametrize("shape", _SHAPES[:3])
def test_reference_is_the_published_layer_stack(shape):
    """The reference with the published biases equals an nn layer stack built from the published modules,
    and the biases cancel (same output without them)."""
    c, e = shape[1:3]
    inputs = make_inputs(*shape)
    x, dw, gamma, beta, w1, w2, s = inputs
    gen = torch.Generator().manual_seed(1)
    dw_bias = torch.randn(3, c, generator=gen, dtype=torch.float64)
    b1 = torch.randn(e, generator=gen, dtype=torch.float64)
    b2 = torch.randn(c, generator=gen, dtype=torch.float64)
    with_bias = op.dilated_depthwise_block_reference(*inputs, dw_bias=dw_bias, pw1_bias=b1, pw2_bias=b2)
    without = op.dilated_depthwise_block_reference(*inputs)
    assert_tight(with_bias, without, "bias cancellation")

    branches = []
    for k, dil in enumerate((1, 2, 3)):
        conv = torch.nn.Conv3d(c, c, 3, padding=dil, dilation=dil, groups=c, dtype=torch.float64)
        norm = torch.nn.GroupNorm(c, c, dtype=torch.float64)
        act = torch.nn.PReLU(dtype=torch.float64)
        with torch.no_grad():
            conv.weight.copy_(dw[k].unsqueeze(1))
            conv.bias.copy_(dw_bias[k])
            norm.weight.copy_(gamma[k])
            norm.bias.copy_(beta[k])
            act.weight.fill_(float(s[k]))
        branches.append(act(norm(conv(x))))
    pw1 = torch.nn.Conv3d(3 * c, e, 1, dtype=torch.float64)
    pw2 = torch.nn.Conv3d(e, c, 1, dtype=torch.float64)
    with torch.no_grad():
        pw1.weight.copy_(w1[..., None, None, None])
        pw1.bias.copy_(b1)
        pw2.weight.copy_(w2[..., None, None, None])
        pw2.bias.copy_(b2)
    norm = torch.nn.InstanceNorm3d(e)
    h = F.prelu(norm(pw1(torch.cat(branches, 1))), s[3:4])
    h = F.prelu(torch.nn.InstanceNorm3d(c)(pw2(h)), s[4:5])
    expected = F.prelu(torch.nn.InstanceNorm3d(c)(h + x), s[5:6])
    assert_tight(with_bias, expected, "layer stack")


@_CPP
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", _SHAPES)
def test_cpp_matches_reference(shape, dtype):
    fast, in_dtype, exact = judged("cpp", shape, dtype)
    assert fast["output"].dtype == dtype
    if dtype == torch.float64:
        for name, value in fast.items():
            assert_tight(value, exact[name], name)
    else:
        assert_within(dtype, fast, in_dtype, exact)


@_CPP
def test_cpp_eval_mode_saves_nothing_and_matches():
    inputs = make_inputs(2, 3, 6, 5, 7, 9, dtype=torch.float32)
    with torch.no_grad():
        y = functional.dilated_depthwise_block(*inputs, backend="cpp")
    assert not y.requires_grad
    exact = op.dilated_depthwise_block_reference(*[t.double() for t in inputs])
    in_dtype = op.dilated_depthwise_block_reference(*inputs)
    assert_within(torch.float32, {"eval": y}, {"eval": in_dtype}, {"eval": exact})


@_CPP
def test_cpp_workspace_cache_is_reported_and_released():
    inputs = make_inputs(2, 4, 8, 6, 7, 8, dtype=torch.float32)
    expected = functional.dilated_depthwise_block(*inputs, backend="cpp")
    held = op.cpu_workspace_bytes()
    # at least one sample's workspace: (2 * 3c + 2e + 2c) float32 values per voxel
    assert held >= (2 * 3 * 4 + 2 * 8 + 2 * 4) * 6 * 7 * 8 * 4
    assert op.cpu_workspace_bytes(release=True) == held
    assert op.cpu_workspace_bytes() == 0
    again = functional.dilated_depthwise_block(*inputs, backend="cpp")  # allocates afresh
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    assert op.cpu_workspace_bytes() > 0


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
def test_higher_order_gradients(backend):
    """The reference is twice differentiable; fused backends refuse create_graph (no silent zero Hessian)."""
    if backend == "cpp" and not _HAS_CPP:
        pytest.skip("bamco_fast._C not built")
    if backend == "triton":
        pytest.importorskip("triton")
        if not torch.cuda.is_available() and not triton_interpreted():
            pytest.skip("needs a CUDA device or TRITON_INTERPRET=1")
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    dtype = torch.float64 if backend != "triton" else torch.float32
    inputs = [t.to(device) for t in make_inputs(1, 2, 4, 4, 5, 6, dtype=dtype)]
    x = inputs[0].clone().requires_grad_()
    y = functional.dilated_depthwise_block(x, *inputs[1:], backend=backend).square().mean()
    if backend == "reference":
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        assert h.abs().sum() > 0
    else:
        with pytest.raises(RuntimeError, match="first-order gradients only"):
            torch.autograd.grad(y, x, create_graph=True)


@_CPP
def test_cpp_gradcheck_float64():
    inputs = [t.requires_grad_() for t in make_inputs(1, 2, 3, 3, 4, 5)]
    fn = lambda *a: functional.dilated_depthwise_block(*a, backend="cpp")  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@_CPP
def test_cpp_opcheck():
    op.cpp_op()
    inputs = make_inputs(2, 2, 3, 3, 4, 5)
    torch.library.opcheck(torch.ops.bamco_fast.dilated_depthwise_block.default, (*inputs, 1e-5))
    torch.library.opcheck(
        torch.ops.bamco_fast.dilated_depthwise_block.default,
        (*[t.clone().requires_grad_() for t in inputs], 1e-5),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
    upstream = torch.randn_like(inputs[0])
    torch.library.opcheck(
        torch.ops.bamco_fast.dilated_depthwise_block_backward.default, (upstream, *inputs, 1e-5)
    )


@_TRITON
def test_triton_opcheck():
    """``torch.library.opcheck`` of the Triton forward and backward ops (interpreter: CPU tensors)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    forward = op.triton_op()
    inputs = [t.float().to(device) for t in make_inputs(2, 2, 4, 3, 4, 5)]
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    if device == "cuda":
        utils = (*utils, "test_aot_dispatch_dynamic")
    torch.library.opcheck(forward, (*inputs, 1e-5), test_utils=utils)
    torch.library.opcheck(forward, (*[t.clone().requires_grad_() for t in inputs], 1e-5), test_utils=utils)
    upstream = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(4)).to(device)
    backward = torch.ops.bamco_fast.dilated_depthwise_block_triton_backward.default
    torch.library.opcheck(backward, (upstream, *inputs, 1e-5), test_utils=utils)


@_CPP
def test_cpp_result_does_not_depend_on_thread_count():
    inputs = make_inputs(2, 4, 8, 4, 5, 6, dtype=torch.float32)
    upstream = torch.randn(2, 4, 4, 5, 6, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            results.append(
                output_and_grads(
                    lambda *a: functional.dilated_depthwise_block(*a, backend="cpp"), inputs, upstream
                )
            )
    finally:
        torch.set_num_threads(threads)
    (y1, g1), (y2, g2) = results
    assert torch.equal(y1, y2)
    for name, a, b in zip(_NAMES, g1, g2):
        assert torch.equal(a, b), name


@_TRITON
@pytest.mark.parametrize("dtype", [torch.float32])
@pytest.mark.parametrize("shape", _TRITON_SHAPES)
def test_triton_matches_reference(shape, dtype):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert_within(dtype, *judged("triton", shape, dtype, device))


@_TRITON
def test_triton_bf16_small():
    """Interpreter-sized bf16: output and every gradient within ``op.TOLERANCES[bfloat16]`` (factor x the
    reference's own bf16 error, measured here)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fast, in_dtype, exact = judged("triton", (2, 3, 6, 5, 7, 9), torch.bfloat16, device)
    assert all(t.dtype == torch.bfloat16 for t in fast.values())
    assert_within(torch.bfloat16, fast, in_dtype, exact)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(2, 12, 24, 36, 84, 84), (4, 48, 96, 9, 21, 21), (4, 192, 384, 2, 5, 5)])
def test_triton_bf16_within_twice_torch_error(shape):
    """bf16: the Triton block's error against float64 is at most 2x that of the reference run in bf16."""
    inputs64 = make_inputs(*shape)
    exact = op.dilated_depthwise_block_reference(*inputs64)
    cuda_bf16 = [t.cuda().bfloat16() for t in inputs64]
    torch_bf16 = op.dilated_depthwise_block_reference(*cuda_bf16, upcast=False).double().cpu()
    triton_bf16 = functional.dilated_depthwise_block(*cuda_bf16, backend="triton").double().cpu()
    assert_within(torch.bfloat16, {"output": triton_bf16}, {"output": torch_bf16}, {"output": exact})


def test_bad_inputs_name_the_argument():
    good = make_inputs(1, 2, 3, 3, 4, 5)
    with pytest.raises(ValueError, match=r"x must have shape \(B, c, D, H, W\), got \(2, 3, 4, 5\)"):
        functional.dilated_depthwise_block(good[0][0], *good[1:])
    with pytest.raises(TypeError, match="x must be a floating tensor, got dtype torch.int64"):
        functional.dilated_depthwise_block(good[0].long(), *good[1:])
    with pytest.raises(
        ValueError, match=r"dw_weight must have shape \(3, 2, 3, 3, 3\).*got \(3, 3, 3, 3, 3\)"
    ):
        functional.dilated_depthwise_block(
            good[0], torch.zeros(3, 3, 3, 3, 3, dtype=torch.float64), *good[2:]
        )
    with pytest.raises(ValueError, match=r"pw2_weight must have shape \(2, 3\).*got \(2, 4\)"):
        functional.dilated_depthwise_block(*good[:5], torch.zeros(2, 4, dtype=torch.float64), good[6])
    with pytest.raises(ValueError, match="prelu dtype torch.float32 must match x dtype torch.float64"):
        functional.dilated_depthwise_block(*good[:6], good[6].float())
    with pytest.raises(ValueError, match="at least 2 voxels"):
        functional.dilated_depthwise_block(good[0][..., :1, :1, :1].contiguous(), *good[1:])
    with pytest.raises(ValueError, match="eps must be a finite number > 0, got 0"):
        functional.dilated_depthwise_block(*good, eps=0)


@_CPP
def test_cpp_kernel_checks_name_the_argument():
    op.cpp_op()
    good = make_inputs(1, 2, 3, 3, 4, 5)
    with pytest.raises(RuntimeError, match=r"pw1_weight must be \(e, 6\), got shape \[3, 5\]"):
        torch.ops.bamco_fast.dilated_depthwise_block(
            *good[:4], torch.zeros(3, 5, dtype=torch.float64), *good[5:], 1e-5
        )
    with pytest.raises(RuntimeError, match="x must be float32 or float64, got Half"):
        torch.ops.bamco_fast.dilated_depthwise_block(*[t.half() for t in good], 1e-5)


def test_explicit_backend_never_falls_back():
    inputs = [t.half() for t in make_inputs(1, 2, 3, 3, 4, 5)]
    with pytest.raises(
        BackendUnavailableError, match=r"cpp: .*dtype float16 not in \['float32', 'float64'\]"
    ):
        functional.dilated_depthwise_block(*inputs, backend="cpp")
    y = functional.dilated_depthwise_block(*inputs)  # automatic: the reference takes float16
    assert y.dtype == torch.float16 and y.shape == inputs[0].shape
