"""Launch planning of the Triton loss: the tile settings a caller may ask for and the plan of one call.

Two frozen records and no global table:

* :class:`LaunchSettings`: what a caller asks for (tile sizes, key splits, warps, ...); ``None`` means
  "choose from the shapes and the device". The settings in force are held in a context variable and
  changed only for the duration of a ``with launch_settings(...)`` block (the GPU sweep in
  ``benchmarks/gpu_tune.py``, the ahead-of-time compiler :mod:`bamco_fast.kernels.aot` and the tests use
  this; the library itself never changes them).
* :class:`LaunchPlan`: the resolved launches of one call, from :func:`plan_launches`.

The view groups: mode :data:`ALL_VIEWS` has one group of all V views; mode :data:`VIEW_PAIRS` has one
group per unordered pair of views (2 views each, V (V - 1) / 2 groups). This module imports neither
Triton nor CUDA.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch

ALL_VIEWS = 0  # mode: one loss over all V views
VIEW_PAIRS = 1  # mode: the mean over unordered view pairs

# Batches up to this size get their class counts inside the kernels (saves the count launch).
INLINE_COUNT_MAX_BATCH = 512


@dataclass(frozen=True)
class LaunchSettings:
    """Requested launch parameters of the loss kernels; ``None`` lets :func:`plan_launches` choose.

    Attributes:
        num_splits: key splits of the forward kernel.
        block_m: anchor rows per forward program.
        block_n: key rows per tile (forward).
        block_m_grad: rows (samples or prototypes) per gradient program.
        block_n_grad: key rows per tile (gradient).
        block_d: D chunk of the similarity products.
        block_do: D slice owned by one gradient program.
        num_warps: warps per forward program.
        num_warps_grad: warps per gradient program.
        num_stages: software-pipelining stages of the forward kernel's key loops.
        num_stages_grad: software-pipelining stages of the gradient kernel's key loops.
        fp32_precision: ``"ieee"`` (full fp32 dots) or ``"tf32"`` for fp32 inputs.
        inline_counts: True/False forces the in-kernel class counts on/off.
        plan_for_sms: plan GPU launches for a card with this many SMs even for CPU tensors (the
            ahead-of-time compiler, and tests that run a card's plan in the interpreter).
    """

    num_splits: int | None = None
    block_m: int | None = None
    block_n: int | None = None
    block_m_grad: int | None = None
    block_n_grad: int | None = None
    block_d: int | None = None
    block_do: int | None = None
    num_warps: int | None = None
    num_warps_grad: int | None = None
    num_stages: int | None = None
    num_stages_grad: int | None = None
    fp32_precision: str = "ieee"
    inline_counts: bool | None = None
    plan_for_sms: int | None = None

    def __post_init__(self) -> None:
        if self.fp32_precision not in ("ieee", "tf32"):
            raise ValueError(
                f"LaunchSettings: fp32_precision must be 'ieee' or 'tf32', got {self.fp32_precision!r}"
            )


_SETTINGS: contextvars.ContextVar[LaunchSettings] = contextvars.ContextVar(
    "bamco_loss_launch_settings",
    default=LaunchSettings(),  # noqa: B039 (a frozen dataclass: nothing can mutate the default)
)


def current_settings() -> LaunchSettings:
    """The launch settings in force (the defaults outside any :func:`launch_settings` block)."""
    return _SETTINGS.get()


@contextlib.contextmanager
def launch_settings(**overrides: object) -> Iterator[LaunchSettings]:
    """Use the current settings with ``overrides`` inside the block; restored on exit.

    Raises:
        KeyError: an override names no field of :class:`LaunchSettings` (before anything changes).

    Example: ``with launch_settings(block_do=512): loss = bamco_loss(f, y, p, backend="triton")``.
    """
    fields = [f.name for f in dataclasses.fields(LaunchSettings)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise KeyError(f"launch_settings: {unknown} are not LaunchSettings fields; expected some of {fields}")
    token = _SETTINGS.set(dataclasses.replace(_SETTINGS.get(), **overrides))  # type: ignore[arg-type]
    try:
        yield _SETTINGS.get()
    finally:
        _SETTINGS.reset(token)


@dataclass(frozen=True)
class LaunchPlan:
    """The launches of one loss call (see the kernels in :mod:`bamco_fast.kernels.bamco_loss_kernels`).

    Attributes:
        on_gpu: planned for a GPU (CUDA tensors, or ``plan_for_sms``); else for the interpreter.
        block_m, block_n, block_d, num_warps: forward tiles (anchor rows, key rows, D chunk) and warps.
        block_m_grad, block_n_grad, block_do, num_warps_grad: gradient tiles (rows, key rows, D slice).
        num_stages, num_stages_grad: pipelining stages of the forward and gradient kernels' key loops.
        num_splits: key splits of the forward kernel (programs per row block).
        keys_per_split: key columns each split covers (a multiple of ``block_n``).
        inline_counts: class counts computed inside the kernels (no count launch).
        precision: ``input_precision`` of the dots (``"ieee"`` or ``"tf32"``).
        block_labels: labels compared per step when counting classes (count and forward kernels).
        block_finish_rows: rows the finishing kernel merges per step.
        block_finish_labels: labels the finishing kernel compares per step.
        count_warps, finish_warps: warps of the count and finishing kernels.
    """

    on_gpu: bool
    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    block_m_grad: int
    block_n_grad: int
    block_do: int
    num_warps_grad: int
    num_stages: int
    num_stages_grad: int
    num_splits: int
    keys_per_split: int
    inline_counts: bool
    precision: str
    block_labels: int
    block_finish_rows: int
    block_finish_labels: int
    count_warps: int
    finish_warps: int


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


_SM_CACHE: dict[int, int] = {}


def _num_sms(device: torch.device, settings: LaunchSettings) -> int:
    if settings.plan_for_sms is not None:
        return settings.plan_for_sms
    if device.type != "cuda":
        return 4
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_CACHE:
        _SM_CACHE[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_CACHE[index]


def plan_launches(
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    views_per_group: int,
    num_groups: int,
    num_classes: int,
    dim: int,
    settings: LaunchSettings | None = None,
) -> LaunchPlan:
    """Tile sizes, key splits and warps for one call (``settings`` fields that are not None win).

    ``settings`` defaults to :func:`current_settings`. On CPU tensors (Triton interpreter) the tiles are
    large and there is one split, because the interpreter's cost grows with the number of programs and
    loop iterations. On a GPU the tiles come from sm_90 ptxas resource usage (``python -m
    bamco_fast.kernels.aot``: no spills, wgmma-sized row blocks), not yet tuned by timing, and the key
    splits target two programs per SM.
    """
    settings = current_settings() if settings is None else settings
    on_gpu = device.type == "cuda" or settings.plan_for_sms is not None
    d_pow2 = max(16, _next_pow2(dim))
    if on_gpu:
        tiles = dict(block_m=128, block_n=64, block_m_grad=64, block_n_grad=32, block_d=32)
        tiles.update(block_do=min(d_pow2, 256), num_warps=8, num_warps_grad=8, num_stages=2)
        # fp32 inputs take FMA, not wgmma: a second stage of fp32 key tiles would take the gradient
        # kernel past 255 registers per thread (spills); one stage keeps it at 226 (sm_90 ptxas).
        tiles.update(num_stages_grad=1 if dtype == torch.float32 else 2)
    else:
        tiles = dict(block_m=32, block_n=32, block_m_grad=32, block_n_grad=32, block_d=min(64, d_pow2))
        tiles.update(block_do=d_pow2, num_warps=4, num_warps_grad=4, num_stages=1, num_stages_grad=1)
    for key in tiles:
        requested = getattr(settings, key)
        if requested is not None:
            tiles[key] = int(requested)
    rows = views_per_group * batch
    row_blocks = num_groups * _cdiv(rows, tiles["block_m"])
    key_tiles = _cdiv(rows, tiles["block_n"]) + _cdiv(num_classes, tiles["block_n"])
    if settings.num_splits is not None:
        splits = int(settings.num_splits)
    elif not on_gpu:
        splits = 1
    else:
        splits = _cdiv(2 * _num_sms(device, settings), row_blocks)
    splits = max(1, min(splits, key_tiles))
    keys_per_split = _cdiv(key_tiles, splits) * tiles["block_n"]
    # Recompute the split count from the rounded split width so no split is empty.
    splits = _cdiv(key_tiles * tiles["block_n"], keys_per_split)
    inline = (
        batch <= INLINE_COUNT_MAX_BATCH if settings.inline_counts is None else bool(settings.inline_counts)
    )
    return LaunchPlan(
        on_gpu=on_gpu,
        num_splits=splits,
        keys_per_split=keys_per_split,
        inline_counts=inline,
        precision=settings.fp32_precision if dtype == torch.float32 else "tf32",
        block_labels=128 if on_gpu else 64,
        block_finish_rows=256,
        block_finish_labels=16 if on_gpu else 64,
        count_warps=8 if on_gpu else 4,
        finish_warps=8 if on_gpu else 4,
        **tiles,
    )
