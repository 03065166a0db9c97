"""bamco_loss: reference and C++ backends against a literal float64 Eq. 1, gradients, op checks, errors."""

from __future__ import annotations

import itertools

import pytest
import tolerance_checks
import torch
import torch.nn.functional as F
from loss_oracle import eq1_loss, eq1_multimodal_loss

import bamco_fast
from bamco_fast import functional
from bamco_fast.ops import bamco_loss as op
from bamco_fast.ops._backends import BackendUnavailableError
from bamco_fast.ops._tolerance import relative_error

_HAS_CPP = op.backends()[1].availability() is None
CPU_BACKENDS = [
    "reference",
    pytest.param("cpp", marks=pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")),
]

# Every backend that can take CPU tensors here: Triton only under TRITON_INTERPRET=1 (or with a CUDA card,
# where the inputs move there).
_TRITON_REASON = op.backends(explicit=True)[0].availability()
ALL_BACKENDS = [
    *CPU_BACKENDS,
    pytest.param("triton", marks=pytest.mark.skipif(_TRITON_REASON is not None, reason=str(_TRITON_REASON))),
]


def on_device_of(backend, *tensors):
    """The tensors on the device ``backend`` runs on (CUDA for Triton when a card is present)."""
    device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
    return [t.to(device) for t in tensors]


# (B, V, C, D): every B x V x C combination, D alternating, plus one large-D case per B.
_SHAPES = (
    [
        (b, v, c, 16 if (b + v + c) % 2 else 40)
        for b, v, c in itertools.product((1, 2, 7, 48, 333), (2, 3), (1, 5, 1450))
        if not (b == 333 and v == 3 and c != 5)  # the per-anchor oracle is slow at 999 anchors
    ]
    + [(b, 2, 285, 512) for b in (1, 48, 333)]
    + [(7, 8, 5, 16), (5, 12, 3, 16)]
)  # many views (multi-crop)


def make_inputs(batch, views, classes, dim, dtype=torch.float64, seed=0, labels=None):
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, views, dim, generator=gen, dtype=torch.float64), dim=-1)
    prototypes = F.normalize(torch.randn(classes, dim, generator=gen, dtype=torch.float64), dim=-1)
    if labels is None:
        labels = torch.randint(0, classes, (batch,), generator=gen)
    return features.to(dtype), labels, prototypes.to(dtype)


def assert_tight(actual, exact, what):
    tolerance_checks.assert_tight(op.TOLERANCES, actual, exact, what)


def assert_within(dtype, fast, reference, exact):
    tolerance_checks.assert_within(op.TOLERANCES, dtype, fast, reference, exact)


_NAMES = ("loss", "grad features", "grad prototypes")


def loss_and_grads(fn, features, labels, prototypes, upstream):
    f = features.clone().requires_grad_()
    p = prototypes.clone().requires_grad_()
    loss = fn(f, labels, p)
    gf, gp = torch.autograd.grad(loss * upstream, (f, p))
    return loss.detach(), gf, gp


def fused(backend, temperature):
    """``functional.bamco_loss`` on ``backend`` as a ``(features, labels, prototypes) -> loss`` function."""
    return lambda f, y, p: functional.bamco_loss(f, y, p, temperature, backend=backend)


_ORACLE_CACHE: dict[tuple, tuple] = {}


def oracle_for(shape):
    """Eq. 1 loss and gradients for the float64 inputs of ``shape`` (computed once per shape)."""
    if shape not in _ORACLE_CACHE:
        features, labels, prototypes = make_inputs(*shape, seed=sum(shape))
        upstream = torch.tensor(0.37, dtype=torch.float64)
        _ORACLE_CACHE[shape] = loss_and_grads(
            lambda f, y, p: eq1_loss(f, y, p, 0.07), features, labels, prototypes, upstream
        )
    return _ORACLE_CACHE[shape]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", _SHAPES, ids=lambda s: "B{}V{}C{}D{}".format(*s))
def test_matches_eq1(backend, dtype, shape):
    features, labels, prototypes = make_inputs(*shape, dtype=dtype, seed=sum(shape))
    expected = oracle_for(shape)
    upstream = torch.tensor(0.37, dtype=dtype)
    actual = loss_and_grads(fused(backend, 0.07), features, labels, prototypes, upstream)
    if dtype == torch.float64:
        for name, a, e in zip(_NAMES, actual, expected):
            assert_tight(a, e, name)
        return
    # Bound: factor x the error of the pure-torch reference run in the same dtype on the same inputs.
    in_dtype = loss_and_grads(
        lambda f, y, p: op.bamco_loss_reference(f, y, p, 0.07), features, labels, prototypes, upstream
    )
    assert_within(dtype, dict(zip(_NAMES, actual)), dict(zip(_NAMES, in_dtype)), dict(zip(_NAMES, expected)))


LABEL_CASES = {
    "all_one_class": lambda b, c: torch.zeros(b, dtype=torch.long),
    "one_member_each": lambda b, c: torch.randperm(c)[:b],
    "absent_classes": lambda b, c: torch.randint(0, 2, (b,)) * (c - 1),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
@pytest.mark.parametrize("views", [2, 3])
def test_label_structures(backend, case, views):
    labels = LABEL_CASES[case](9, 12)
    features, labels, prototypes = make_inputs(9, views, 12, 24, labels=labels)
    upstream = torch.tensor(-1.3, dtype=torch.float64)
    expected = loss_and_grads(lambda f, y, p: eq1_loss(f, y, p, 0.1), features, labels, prototypes, upstream)
    actual = loss_and_grads(fused(backend, 0.1), features, labels, prototypes, upstream)
    for name, a, e in zip(_NAMES, actual, expected):
        assert_tight(a, e, f"{case}: {name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "num_modalities,batch,classes", [(2, 5, 3), (3, 7, 4), (3, 48, 285), (4, 6, 2), (9, 5, 3)]
)
def test_multimodal_matches_pairwise_eq1(backend, num_modalities, batch, classes):
    features, labels, prototypes = make_inputs(batch, num_modalities, classes, 32, seed=batch)
    mods = [features[:, m] for m in range(num_modalities)]
    leaves = [m.clone().requires_grad_() for m in mods]
    p_ref = prototypes.clone().requires_grad_()
    expected = eq1_multimodal_loss(leaves, labels, p_ref, 0.07)
    expected_grads = torch.autograd.grad(expected * 2.0, [*leaves, p_ref])
    leaves2 = [m.clone().requires_grad_() for m in mods]
    p2 = prototypes.clone().requires_grad_()
    actual = functional.bamco_multimodal_loss(leaves2, labels, p2, 0.07, backend=backend)
    actual_grads = torch.autograd.grad(actual * 2.0, [*leaves2, p2])
    assert_tight(actual, expected, "loss")
    for k, (a, e) in enumerate(zip(actual_grads, expected_grads)):
        assert_tight(a, e, f"grad input {k}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_small_temperature_is_stable(backend):
    """A fixed 1/T shift underflows for T < ~0.023 in float32; the online max must not."""
    features, labels, prototypes = make_inputs(16, 2, 4, 8, dtype=torch.float32)
    loss = functional.bamco_loss(features, labels, prototypes, 0.005, backend=backend)
    exact = eq1_loss(features.double(), labels, prototypes.double(), 0.005)
    in_dtype = op.bamco_loss_reference(features, labels, prototypes, 0.005)
    assert torch.isfinite(loss)
    assert_within(torch.float32, {"loss": loss}, {"loss": in_dtype}, {"loss": exact})


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_loss_not_last_op(backend):
    """Gradients stay right when the loss feeds further computation."""
    features, labels, prototypes = make_inputs(6, 2, 3, 8)
    f = features.clone().requires_grad_()
    out = torch.sin(functional.bamco_loss(f, labels, prototypes, backend=backend)) * 3
    (g,) = torch.autograd.grad(out, f)
    f2 = features.clone().requires_grad_()
    ref = eq1_loss(f2, labels, prototypes, 0.07)
    (g2,) = torch.autograd.grad(torch.sin(ref) * 3, f2)
    assert_tight(g, g2, "grad")


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
def test_cpp_gradcheck_float64():
    features, labels, prototypes = make_inputs(5, 3, 4, 6)
    f = features.clone().requires_grad_()
    p = prototypes.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, p: functional.bamco_loss(f, labels, p, 0.2, backend="cpp"), (f, p)
    )
    mods = [
        features[:, 0].clone().requires_grad_(),
        features[:, 1].clone().requires_grad_(),
        features[:, 2].clone().requires_grad_(),
    ]
    assert torch.autograd.gradcheck(
        lambda a, b, c, p: functional.bamco_multimodal_loss([a, b, c], labels, p, 0.2, backend="cpp"),
        (*mods, p),
    )


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("compute_grad", [False, True])
def test_cpp_opcheck(mode, compute_grad):
    features, labels, prototypes = make_inputs(7, 3, 5, 12, dtype=torch.float32)
    torch.library.opcheck(op.cpp_op(), (features, labels, prototypes, 0.07, mode, compute_grad))


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
def test_cpp_thread_count_does_not_change_result():
    features, labels, prototypes = make_inputs(333, 2, 40, 64, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = functional.bamco_loss(features, labels, prototypes, backend="cpp")
        torch.set_num_threads(max(2, before))
        many = functional.bamco_loss(features, labels, prototypes, backend="cpp")
    finally:
        torch.set_num_threads(before)
    assert_tight(one, many, "loss")


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
@pytest.mark.parametrize("mode", ["views", "pairs"])
@pytest.mark.parametrize(("batch", "views", "classes"), [(200, 3, 7), (301, 4, 1)])
def test_cpp_anchor_chunks_crossing_views(mode, batch, views, classes):
    """More anchors than one chunk (256 float64 rows), chunks straddling view boundaries, rows in several
    groups (pairs mode with V >= 3): the loss and both gradients equal the reference's."""
    features, labels, prototypes = make_inputs(batch, views, classes, 24, seed=views)
    upstream = torch.tensor(0.75, dtype=torch.float64)
    results = []
    for backend in ("reference", "cpp"):
        f = features.clone().requires_grad_()
        p = prototypes.clone().requires_grad_()
        loss = op.bamco_loss(f, labels, p, 0.07, mode=mode, backend=backend)
        (loss * upstream).backward()
        results.append((loss.detach(), f.grad, p.grad))
    for name, e, a in zip(_NAMES, *results):
        assert_tight(a, e, f"{mode} B={batch} V={views}: {name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("label_dtype", [torch.int32, torch.int16, torch.uint8])
def test_any_integer_label_dtype(backend, label_dtype):
    features, labels, prototypes = make_inputs(9, 2, 4, 8)
    expected = functional.bamco_loss(features, labels, prototypes, backend=backend)
    actual = functional.bamco_loss(features, labels.to(label_dtype), prototypes, backend=backend)
    assert_tight(actual, expected, f"labels {label_dtype}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_higher_order_gradients(backend):
    """The reference is twice differentiable; the fused backends refuse create_graph instead of silently
    returning a gradient that is constant in the inputs."""
    features, labels, prototypes = make_inputs(5, 2, 3, 8)
    f = features.clone().requires_grad_()
    loss = functional.bamco_loss(f, labels, prototypes, backend=backend)
    if backend == "reference":
        (g,) = torch.autograd.grad(loss, f, create_graph=True)
        (hvp,) = torch.autograd.grad((g * features).sum(), f)
        assert hvp.abs().sum() > 0
    else:
        with pytest.raises(RuntimeError, match="first-order gradients only"):
            torch.autograd.grad(loss, f, create_graph=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_retained_graph_backward_accumulates(backend):
    """Three backward passes through a retained graph give three times the gradient (the saved fused
    gradients are never handed out as ``.grad`` themselves)."""
    features, labels, prototypes = make_inputs(6, 2, 3, 8)
    f = features.clone().requires_grad_()
    p = prototypes.clone().requires_grad_()
    loss = functional.bamco_loss(f, labels, p, backend=backend)
    once_f, once_p = torch.autograd.grad(loss, (f, p), retain_graph=True)
    for _ in range(3):
        loss.backward(retain_graph=True)
    f.grad.mul_(0.5)  # in-place use of .grad must not touch what the graph saved
    loss.backward()
    assert_tight(f.grad, 2.5 * once_f, "grad features")
    assert_tight(p.grad, 4 * once_p, "grad prototypes")


@pytest.mark.skipif(not _HAS_CPP, reason="bamco_fast._C not built")
def test_two_fused_losses_on_one_leaf():
    """Gradients handed over by two fused nodes into one leaf add up (autograd may accumulate in place into
    the first one it receives); compared with the reference."""
    features, labels, prototypes = make_inputs(7, 2, 4, 8)
    grads = {}
    for backend in ("reference", "cpp"):
        f = features.clone().requires_grad_()
        p = prototypes.clone().requires_grad_()
        a = functional.bamco_loss(f, labels, p, 0.1, backend=backend)
        b = functional.bamco_loss(f, labels.flip(0), p, 0.2, backend=backend)
        (a + b).backward()
        f2 = f.detach().clone().requires_grad_()
        functional.bamco_loss(f2, labels, p.detach(), 0.1, backend=backend).backward()
        grads[backend] = (f.grad, p.grad, f2.grad)
    for name, e, got in zip(("features", "prototypes", "features again"), grads["reference"], grads["cpp"]):
        assert_tight(got, e, name)


def test_backward_without_grad_is_reported():
    features, labels, prototypes = make_inputs(4, 2, 3, 8)
    with torch.no_grad():
        loss = functional.bamco_loss(features, labels, prototypes)
    assert not loss.requires_grad


# ---------------------------------------------------------------- bad input


def _bad(**override):
    features, labels, prototypes = make_inputs(4, 2, 3, 8, dtype=torch.float32)
    args = {"features": features, "labels": labels, "prototypes": prototypes, "temperature": 0.07}
    args.update(override)
    return args


_BAD_INPUTS = {
    "labels_out_of_range": (_bad(labels=torch.tensor([0, 1, 2, 3])), ValueError, "labels must lie in"),
    "labels_negative": (_bad(labels=torch.tensor([0, -1, 2, 1])), ValueError, "labels must lie in"),
    "labels_float": (_bad(labels=torch.zeros(4)), TypeError, "labels must be an integer tensor"),
    "labels_wrong_shape": (
        _bad(labels=torch.zeros(3, dtype=torch.long)),
        ValueError,
        "labels must have shape",
    ),
    "features_2d": (_bad(features=torch.zeros(4, 8)), ValueError, "features must have shape (B, V, D)"),
    "one_view": (_bad(features=torch.zeros(4, 1, 8)), ValueError, "V >= 2"),
    "empty_batch": (
        _bad(features=torch.zeros(0, 2, 8), labels=torch.zeros(0, dtype=torch.long)),
        ValueError,
        "at least one sample",
    ),
    "prototype_dim": (_bad(prototypes=torch.zeros(3, 9)), ValueError, "prototypes must have shape (C, D)"),
    "mixed_dtypes": (
        _bad(prototypes=torch.zeros(3, 8, dtype=torch.float64)),
        ValueError,
        "must match features",
    ),
    "int_features": (
        _bad(features=torch.zeros(4, 2, 8, dtype=torch.long)),
        TypeError,
        "features must be a floating",
    ),
    "not_a_tensor": (_bad(features=[[0.0]]), TypeError, "features must be a torch.Tensor"),
    "zero_temperature": (_bad(temperature=0.0), ValueError, "temperature must be"),
    "zero_width": (
        _bad(features=torch.zeros(4, 2, 0), prototypes=torch.zeros(3, 0)),
        ValueError,
        "features need D >= 1",
    ),
    # 1/T = 1e38: the logits fit float32 but their sums do not (no backend can return a reliable answer).
    "tiny_temperature": (_bad(temperature=1e-38), ValueError, "temperature must be >= "),
    "nan_temperature": (_bad(temperature=float("nan")), ValueError, "temperature must be"),
    # un-normalised rows: the logits z.k / T would be ~|z||k| / T (a loss of ~1e8 instead of an error)
    "features_not_unit": (
        _bad(features=_bad()["features"] * 30.0),
        ValueError,
        "features rows must be L2-normalised",
    ),
    "prototypes_not_unit": (
        _bad(prototypes=_bad()["prototypes"] * 0.5),
        ValueError,
        "prototypes rows must be L2-normalised",
    ),
}


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_input_is_named(backend, case):
    """Every backend refuses the same inputs with the same message (checked before dispatch)."""
    args, error, text = _BAD_INPUTS[case]
    if backend == "triton" and torch.cuda.is_available():
        args = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(error) as info:
        functional.bamco_loss(backend=backend, **args)
    assert text in str(info.value)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_smallest_accepted_temperature_is_finite_everywhere(backend):
    """Just above :func:`min_temperature` every backend returns a finite loss and finite gradients that
    agree with the float64 reference: the bound refuses nothing a backend could answer reliably."""
    features, labels, prototypes = make_inputs(5, 2, 3, 8, dtype=torch.float32)
    temperature = 2 * op.min_temperature(torch.float32, 5 * 2 + 3)
    f, y, p = on_device_of(backend, features, labels, prototypes)
    f.requires_grad_()
    loss = functional.bamco_loss(f, y, p, temperature, backend=backend)
    loss.backward()
    exact = op.bamco_loss_reference(features.double(), labels, prototypes.double(), temperature)
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()
    # The logits are ~1e37: the loss keeps float32's relative precision (a few ulps of the logit scale).
    assert relative_error(loss, exact) <= 1e-5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("where", ["features", "prototypes"])
def test_non_finite_inputs_are_named(backend, where):
    args = _bad()
    args[where] = args[where].clone()
    args[where].view(-1)[5] = float("nan")
    with pytest.raises(ValueError, match=f"{where} contains 1 non-finite"):
        functional.bamco_loss(backend=backend, **args)


def test_mixed_devices_are_named():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to mix devices")
    args = _bad(prototypes=_bad()["prototypes"].cuda())
    with pytest.raises(ValueError, match="on one device"):
        functional.bamco_loss(**args)


def test_unknown_backend_and_mode():
    with pytest.raises(ValueError, match="backend argument must be one of"):
        functional.bamco_loss(backend="cuda-magic", **_bad())
    with pytest.raises(ValueError, match="mode must be one of"):
        op.bamco_loss(*_bad().values(), mode="triples")


def test_cpp_rejects_half_with_reasons():
    args = _bad()
    args["features"], args["prototypes"] = args["features"].half(), args["prototypes"].half()
    with pytest.raises(BackendUnavailableError, match="dtype float16 not in"):
        functional.bamco_loss(backend="cpp", **args)


def test_multimodal_bad_input():
    f, y, p = make_inputs(4, 2, 3, 8)
    with pytest.raises(ValueError, match="at least 2"):
        functional.bamco_multimodal_loss([f[:, 0]], y, p)
    with pytest.raises(ValueError, match="one shape"):
        functional.bamco_multimodal_loss([f[:, 0], f[:3, 1]], y, p)
    with pytest.raises(TypeError, match="sequence of"):
        functional.bamco_multimodal_loss(f, y, p)
    with pytest.raises(ValueError, match=r"one dtype and device, got \['float64 on cpu', 'float32 on cpu'\]"):
        functional.bamco_multimodal_loss([f[:, 0], f[:, 1].float()], y, p)


def test_module_matches_functional():
    features, labels, prototypes = make_inputs(8, 2, 5, 16, dtype=torch.float32)
    module = bamco_fast.BaMCoLoss(temperature=0.1)
    torch.testing.assert_close(
        module(features, labels, prototypes), functional.bamco_loss(features, labels, prototypes, 0.1)
    )
    with pytest.raises(ValueError, match="temperature"):
        bamco_fast.BaMCoLoss(temperature=-1)
