"""Op front-ends: reference implementations, backend tables and dispatch, one module per op."""

from __future__ import annotations

from collections.abc import Callable

from . import _backends, bamco_loss, dilated_depthwise_block
from ._backends import Backend, BackendUnavailableError

# Every op's backend table (priority order), for ``python -m bamco_fast.info`` and the tests.
OPS: dict[str, Callable[..., tuple[Backend, ...]]] = {
    "bamco_loss": bamco_loss.backends,
    "dilated_depthwise_block": dilated_depthwise_block.backends,
}

__all__ = ["OPS", "Backend", "BackendUnavailableError", "_backends", "bamco_loss", "dilated_depthwise_block"]
