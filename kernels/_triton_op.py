"""How every Triton op of the library is defined and how its kernels are launched: one rule for both.

An op is a Python function (the host code) that allocates its outputs with torch and launches jitted
kernels through :func:`launch`; :func:`define_op` turns it into the operator ``bamco_fast::NAME``:

* On a GPU it is a ``torch.library.triton_op``: ``torch.compile`` and ``torch.export`` trace through it
  to the kernel launches (``launch`` goes through ``torch.library.wrap_triton``), and its fake
  implementation is the host code itself, run on fake tensors.
* Under ``TRITON_INTERPRET=1`` (CPU tensors, tests only) ``wrap_triton`` hands back the plain
  interpreted kernel, so a traced copy of the host code would hold no launches. There the op is opaque
  (``torch.library.custom_op``): compiled graphs call it as a whole. Its fake implementation is again
  the host code, whose launches :func:`launch` skips on fake tensors.

The op takes no gradient here: its ops-layer front-end attaches the autograd formula
(``torch.library.register_autograd``), once, on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch._subclasses.fake_tensor import is_fake

from ._probe import triton_interpreted

__all__ = ["define_op", "launch"]


def launch(kernel, grid: tuple[int, ...], *args, **kwargs) -> None:
    """Launch the jitted ``kernel`` on ``grid`` through ``torch.library.wrap_triton``.

    Traceable by ``torch.compile`` / ``make_fx`` on a GPU. Under the interpreter ``wrap_triton`` returns
    the interpreted kernel, which cannot run on fake tensors: a launch on fake tensors is skipped there,
    since it has no effect on fake outputs beyond their allocation.
    """
    wrapped = torch.library.wrap_triton(kernel)
    if wrapped is kernel and any(isinstance(a, torch.Tensor) and is_fake(a) for a in args):
        return
    wrapped[grid](*args, **kwargs)


def define_op(name: str, host: Callable, schema: str | None = None) -> torch.library.CustomOpDef:
    """Register ``host`` (launches through :func:`launch`, mutates no input) as ``name``.

    Args:
        name: ``"bamco_fast::op_name"``.
        host: the host code; without ``schema`` its annotations give the op schema.
        schema: the op schema without the name, e.g. ``"(Tensor x, float eps) -> Tensor"``; arguments
            are passed to ``host`` by position.

    Returns:
        The op definition (``torch.ops.bamco_fast.op_name.default`` is the registered op); see the module
        docstring for the GPU and interpreter forms.
    """
    if triton_interpreted():
        op = torch.library.custom_op(name, mutates_args=(), schema=schema)(host)
        op.register_fake(host)
        return op
    return torch.library.triton_op(name, mutates_args=(), schema=schema)(host)
