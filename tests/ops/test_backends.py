"""Backend selection: explicit choices never fall back, automatic picks the first available."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from bamco_fast.ops import _backends, bamco_loss
from bamco_fast.ops._backends import Backend, BackendTable, BackendUnavailableError

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _runner(name):
    return lambda *args: name


def table(triton_ok: bool, cpp_ok: bool):
    return (
        Backend(
            "triton",
            ("cuda",),
            (torch.float32,),
            lambda: None if triton_ok else "no triton here",
            _runner("t"),
        ),
        Backend("cpp", ("cpu",), (torch.float32,), lambda: None if cpp_ok else "no _C here", _runner("c")),
        Backend("reference", ("cpu", "cuda"), (torch.float32, torch.float16), lambda: None, _runner("r")),
    )


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(_backends.ENV_VAR, raising=False)


def test_automatic_takes_first_available():
    assert _backends.select(table(True, True), None, CPU, torch.float32, op_name="x").name == "cpp"
    assert _backends.select(table(True, True), None, CUDA, torch.float32, op_name="x").name == "triton"
    assert _backends.select(table(True, False), None, CPU, torch.float32, op_name="x").name == "reference"
    assert _backends.select(table(False, True), "auto", CUDA, torch.float32, op_name="x").name == "reference"
    assert _backends.select(table(True, True), None, CPU, torch.float16, op_name="x").name == "reference"


def test_explicit_unavailable_lists_every_reason():
    with pytest.raises(BackendUnavailableError) as info:
        _backends.select(table(False, False), "cpp", CPU, torch.float64, op_name="myop")
    text = str(info.value)
    assert "myop: backend 'cpp' was requested by the backend argument" in text
    assert "triton: no triton here; device 'cpu' not in ['cuda']; dtype float64 not in ['float32']" in text
    assert "cpp: no _C here; dtype float64 not in ['float32']" in text
    assert "reference: dtype float64 not in ['float32', 'float16']" in text


def test_environment_variable_is_explicit(monkeypatch):
    monkeypatch.setenv(_backends.ENV_VAR, "reference")
    assert _backends.select(table(True, True), None, CPU, torch.float32, op_name="x").name == "reference"
    monkeypatch.setenv(_backends.ENV_VAR, "triton")
    with pytest.raises(
        BackendUnavailableError, match="requested by the BAMCO_FAST_BACKEND environment variable"
    ):
        _backends.select(table(True, True), None, CPU, torch.float32, op_name="x")
    monkeypatch.setenv(_backends.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="BAMCO_FAST_BACKEND environment variable must be one of"):
        _backends.select(table(True, True), None, CPU, torch.float32, op_name="x")


def test_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv(_backends.ENV_VAR, "triton")
    assert (
        _backends.select(table(True, True), "reference", CPU, torch.float32, op_name="x").name == "reference"
    )


def test_nothing_available_raises():
    tbl = table(True, True)[:2]
    with pytest.raises(BackendUnavailableError, match="no backend can run these inputs"):
        _backends.select(tbl, None, CPU, torch.float16, op_name="x")


def test_cpu_tensors_reach_triton_only_when_named_under_interpreter(monkeypatch):
    features = torch.zeros(2, 2, 4)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert bamco_loss.select_backend(features, None).name != "triton"
    if _backends.triton_import_error() is None:
        assert bamco_loss.select_backend(features, "triton").name == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert bamco_loss.select_backend(features, None).name != "triton"
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="triton: no CUDA device"):
            bamco_loss.select_backend(features, "triton")


def test_op_choice_is_memoised_and_follows_the_environment(monkeypatch):
    """Repeated calls reuse the choice; a changed BAMCO_FAST_BACKEND or backend argument is seen at once."""
    features = torch.zeros(2, 2, 4, dtype=torch.float64)
    calls = []
    real_select = _backends.select

    def counting_select(*args, **kwargs):
        calls.append(args[1])
        return real_select(*args, **kwargs)

    monkeypatch.setattr(_backends, "_CHOSEN", {})
    monkeypatch.setattr(_backends, "select", counting_select)
    first = bamco_loss.select_backend(features, None)
    assert bamco_loss.select_backend(features, None) is first and len(calls) == 1
    assert bamco_loss.select_backend(features, "reference").name == "reference" and len(calls) == 2
    monkeypatch.setenv(_backends.ENV_VAR, "reference")
    assert bamco_loss.select_backend(features, None).name == "reference"
    monkeypatch.delenv(_backends.ENV_VAR)
    assert bamco_loss.select_backend(features, None) is first
    assert bamco_loss.select_backend(features.float(), None).name == first.name  # new key: dtype
    assert len(calls) == 4
    for attempt in (1, 2):  # failures are not remembered: each attempt selects (and raises) afresh
        with pytest.raises(BackendUnavailableError):
            bamco_loss.select_backend(features, "triton")
        assert len(calls) == 4 + attempt


def test_real_table_lists_all_three_backends():
    assert [b.name for b in bamco_loss.backends()] == ["triton", "cpp", "reference"]


def test_compile_constant_sets_the_marker_torch_uses():
    """``compile_constant`` must be what ``torch.compiler.assume_constant_result`` does (without importing
    Dynamo); if torch changes its mechanism, this fails instead of compiled code breaking silently."""

    def probe() -> None:
        return None

    marked = torch.compiler.assume_constant_result(probe)
    public = dict(vars(marked))
    assert public == {"_dynamo_marked_constant": True}

    def other() -> None:
        return None

    ours = _backends.compile_constant(other)
    assert vars(ours) == public
    for fn in (_backends.cpp_availability, _backends.triton_availability, bamco_loss._register_cpp):
        assert getattr(fn, "_dynamo_marked_constant", False), fn.__name__


def test_a_table_carries_each_backends_callable(monkeypatch):
    """Dispatch runs the chosen entry's own callable: adding a backend is one entry in one table."""
    monkeypatch.setattr(_backends, "_CHOSEN", {})
    toy = BackendTable("toy", table(True, True))
    assert toy.select(None, CPU, torch.float32).run() == "c"
    assert toy.select(None, CUDA, torch.float32).run() == "t"
    assert toy.select("reference", CPU, torch.float32).run() == "r"
    assert toy.backends(explicit=True) == toy.entries  # no entry asks for CPU tensors under the interpreter


def test_kernels_never_import_the_op_layer():
    """The Triton kernels sit below the op front-ends: no module of ``bamco_fast.kernels`` imports
    ``bamco_fast.ops`` (the shared probe lives in ``bamco_fast.kernels._probe``)."""
    import bamco_fast.kernels

    for path in Path(bamco_fast.kernels.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("bamco_fast.ops", "..ops")), f"{path.name} imports {name}"


def test_register_once_runs_once_and_retries_after_a_failure():
    calls = []

    def register() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("not yet")

    once = _backends.register_once(register)
    with pytest.raises(RuntimeError, match="not yet"):
        once()
    once()
    once()
    assert calls == [0, 1]
    assert once.__name__ == "register" and getattr(once, "_dynamo_marked_constant", False)
    for op in (bamco_loss._register_cpp, bamco_loss._register_triton):
        assert getattr(op, "_dynamo_marked_constant", False), op.__name__
