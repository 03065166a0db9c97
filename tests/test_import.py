"""``import bamco_fast`` survives a missing extension and a missing Triton; ``bamco_fast.info`` reports it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bamco_fast import _cpp, info

_BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in {blocked!r}:
            raise ImportError(f"{{name}} deliberately made unloadable")
        return None
sys.meta_path.insert(0, _Block())
sys.modules["triton"] = None  # as if Triton were not installed
"""


def run_python(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    script = _BLOCK.format(blocked=set(blocked)) + textwrap.dedent(code)
    env = {"BAMCO_FAST_BACKEND": "", "TRITON_INTERPRET": "0", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )


def test_import_without_extension_and_triton():
    result = run_python(
        """
        import torch, warnings
        import bamco_fast
        from bamco_fast import functional, info
        from bamco_fast.ops import bamco_loss
        f = torch.nn.functional.normalize(torch.randn(4, 2, 8), dim=-1)
        p = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
        y = torch.tensor([0, 1, 1, 2])
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            print("chosen", bamco_loss.select_backend(f, None).name)
            print("loss", float(functional.bamco_loss(f, y, p)))
        try:
            functional.bamco_loss(f, y, p, backend="cpp")
        except bamco_fast.BackendUnavailableError as e:
            print("explicit error:", e)
        print(info.report())
        """,
        ("bamco_fast._C",),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "chosen reference" in out
    assert "explicit error:" in out and "deliberately made unloadable" in out
    assert "bamco_fast._C: NOT loaded: ImportError: bamco_fast._C deliberately made unloadable" in out
    assert "triton: triton failed to import" in out or "triton is not installed" in out


@pytest.mark.skipif(not _cpp.available(), reason=f"bamco_fast._C not built: {_cpp.load_error()}")
def test_info_reports_extension_and_cpp_backends(capsys):
    assert info.main([]) == 0
    out = capsys.readouterr().out
    assert "bamco_fast._C: loaded (built for torch" in out
    assert "cpp       [cpu; float32,float64]: ok" in out
    assert f"CPU kernels: {_cpp.cpu_isa()} (this CPU runs {', '.join(_cpp.cpu_isa_levels())}" in out


def test_import_stays_light():
    """``import bamco_fast`` loads neither Dynamo nor Triton nor the extension (they come on first use)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bamco_fast, bamco_fast.functional; "
            "print(sorted(m for m in ('torch._dynamo', 'triton', 'bamco_fast._C') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
