"""Typed run configurations: nested dataclasses, YAML/JSON files, ``--set a.b=value`` overrides.

A stage defines its configuration as a tree of dataclasses (this module supplies the parts shared by
both stages: :class:`OptimConfig`, :class:`LoopConfig` and the datasets' folders :data:`DATASET_ROOTS`).
Values come, in order, from the preset (a function returning a config), a ``--config FILE.yaml|json``
file, then ``--set a.b=value`` overrides.
Every key is checked against the dataclass fields: an unknown key is an error that lists the valid keys
of that level. Values are coerced to the declared field type (``"1e-3"`` -> ``0.001`` for a ``float``,
which must be finite; ``"true"`` -> ``True`` for a ``bool``, ``"0.9,0.98"`` -> ``(0.9, 0.98)`` for a tuple,
``"none"`` -> ``None`` for an optional field), and each dataclass checks its values (:func:`check_value`).
The resolved config is written into the run folder with portable paths (:func:`save_resolved`,
:mod:`.paths`), and :func:`fingerprint` hashes the fields that change the numerics, so a resume from a
checkpoint of another configuration can be refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .coerce import coerce
from .errors import ConfigError

__all__ = [
    "DATASET_ROOTS",
    "ConfigError",
    "LoopConfig",
    "OptimConfig",
    "apply_overrides",
    "check_value",
    "config_from_dict",
    "config_to_dict",
    "diff_configs",
    "fingerprint",
    "flat_keys",
    "load_config_file",
    "resolve_config",
    "save_resolved",
    "saved_dict",
]

T = TypeVar("T")

#: Default VQA folders (relative to the working directory) of each dataset; "" = the packaged demo subset.
#: The VQA stage reads its questions there; the pretraining presets hold out its validation images.
DATASET_ROOTS: dict[str, str] = {
    "demo": "",
    "slake": "../shared/data/slake",
    "vqa-rad": "../shared/data/vqa_rad/hf_flaviagiammarino_order",
    "pathvqa": "../shared/data/pathvqa",
}


@dataclasses.dataclass
class OptimConfig:
    """AdamW with linear warm-up then half-cosine decay, stepped every optimiser step.

    ``lr(step) = lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, then
    ``min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (step - warmup_steps) / (total - warmup_steps)))``.
    Weight decay applies to parameters with ``ndim >= 2`` (matrices) only; biases, norms and scalars get 0.
    """

    lr: float = 1e-3
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 5
    min_lr: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping

    def __post_init__(self) -> None:
        check_value(math.isfinite(self.lr) and self.lr > 0, "optim.lr", "a finite number > 0", self.lr)
        check_value(self.weight_decay >= 0, "optim.weight_decay", "a number >= 0", self.weight_decay)
        check_value(self.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0", self.warmup_steps)
        check_value(
            0 <= self.min_lr <= self.lr, "optim.min_lr", f"a number in [0, lr={self.lr}]", self.min_lr
        )
        check_value(self.grad_clip >= 0, "optim.grad_clip", "a number >= 0 (0 = off)", self.grad_clip)
        check_value(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            "two numbers in [0, 1)",
            self.betas,
        )


@dataclasses.dataclass
class LoopConfig:
    """Settings of the shared training loop (:func:`bamco_fast.train.loop.train`).

    ``batch_size`` is the global batch: under ``torchrun`` each of the ``W`` ranks takes ``batch_size / W``
    samples of it, so the optimisation is the same as on one process.
    """

    epochs: int = 300
    max_steps: int = 0  # > 0: end training (schedule included) after this many steps, with a final validation
    batch_size: int = 48
    seed: int = 0
    eval_every_epochs: int = 1  # validation (and best-model selection) every this many epochs and at the end
    checkpoint_every_steps: int = 0  # extra checkpoints inside an epoch; 0 = only at epoch ends
    keep_last: int = 3  # rolling checkpoints kept (the best one is kept apart)
    log_every_steps: int = 10
    precision: str = "bf16"  # "bf16": bf16 autocast on CUDA (CPU stays fp32); "fp32": no autocast
    device: str = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1"
    stop_at_step: int = 0  # stop (with a resumable checkpoint) after this global step; 0 = run to the end
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True
    num_threads: int = 0  # torch.set_num_threads on CPU; 0 leaves torch's default

    def __post_init__(self) -> None:
        check_value(self.epochs >= 1, "loop.epochs", "an integer >= 1", self.epochs)
        check_value(
            self.max_steps >= 0, "loop.max_steps", "an integer >= 0 (0 = epochs decide)", self.max_steps
        )
        check_value(self.batch_size >= 1, "loop.batch_size", "an integer >= 1", self.batch_size)
        check_value(
            self.eval_every_epochs >= 1, "loop.eval_every_epochs", "an integer >= 1", self.eval_every_epochs
        )
        check_value(
            self.checkpoint_every_steps >= 0,
            "loop.checkpoint_every_steps",
            ">= 0",
            self.checkpoint_every_steps,
        )
        check_value(self.keep_last >= 1, "loop.keep_last", "an integer >= 1", self.keep_last)
        check_value(
            self.log_every_steps >= 1, "loop.log_every_steps", "an integer >= 1", self.log_every_steps
        )
        check_value(self.precision in ("bf16", "fp32"), "loop.precision", "'bf16' or 'fp32'", self.precision)
        check_value(self.stop_at_step >= 0, "loop.stop_at_step", "an integer >= 0", self.stop_at_step)
        check_value(self.num_threads >= 0, "loop.num_threads", "an integer >= 0", self.num_threads)


# Fields that do not change what is computed: they may differ between a run and its resume.
RESUME_FREE_KEYS: frozenset[str] = frozenset(
    {
        "out",
        "loop.progress",
        "loop.tensorboard",
        "loop.plot",
        "loop.keep_last",
        "loop.log_every_steps",
        "loop.num_threads",
        "loop.stop_at_step",
        "loop.checkpoint_every_steps",
        "loop.device",
    }
)


def check_value(ok: bool, key: str, expected: str, got: Any) -> None:
    """Raise :class:`ConfigError` ``config key 'KEY': expected EXPECTED, got GOT`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key {key!r}: expected {expected}, got {got!r}")


# ---------------------------------------------------------------------------------------------------
# dict <-> dataclass


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (tuples become lists) of a dataclass config, JSON-serialisable."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unknown_key_error(key: str, valid: Iterable[str]) -> ConfigError:
    valid = sorted(valid)
    return ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(valid)}")


def config_from_dict(cls: type[T], data: dict[str, Any], *, prefix: str = "") -> T:
    """Build ``cls`` from a (possibly partial) nested dict; missing keys take the dataclass defaults."""
    return _merge(cls, None, data, prefix)


def _merge(cls: type[T], base: T | None, data: dict[str, Any], prefix: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r}: expected a mapping, got {data!r}")
    types_ = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _unknown_key_error(prefix + key, (prefix + n for n in names))
    values: dict[str, Any] = {}
    for name in names:
        current = getattr(base, name) if base is not None else None
        tp = types_[name]
        if name in data:
            if _is_dataclass_type(tp):
                values[name] = _merge(tp, current, data[name], f"{prefix}{name}.")
            else:
                values[name] = coerce(data[name], tp, prefix + name)
        elif base is not None:
            values[name] = current
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a required field without a value; a library config's own check
        raise ConfigError(f"config section {prefix or '<root>'!r}: {exc}") from None


def apply_overrides(config: T, data: dict[str, Any]) -> T:
    """A copy of ``config`` with the (nested, partial) ``data`` applied, checked and coerced."""
    return _merge(type(config), config, data, "")


def flat_keys(cls_or_config: Any, prefix: str = "") -> list[str]:
    """Every settable dotted key of a config class or instance, e.g. ``["loop.epochs", ...]``."""
    cls = cls_or_config if isinstance(cls_or_config, type) else type(cls_or_config)
    out: list[str] = []
    for name, tp in _field_types(cls).items():
        if _is_dataclass_type(tp):
            out.extend(flat_keys(tp, f"{prefix}{name}."))
        else:
            out.append(prefix + name)
    return out


# ---------------------------------------------------------------------------------------------------
# files and command-line overrides


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml`` or ``.json`` config file into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config {path}: expected UTF-8 text, got a byte {exc.object[exc.start]:#x} at {exc.start}"
        ) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config {path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"--config {path}: reading YAML needs PyYAML (pip install bamco_fast[train]); or use JSON"
            ) from None

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: malformed YAML: {exc}") from None
    else:
        raise ConfigError(f"--config: expected a .yaml, .yml or .json file, got {path}")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["loop.epochs=3", "optim.lr=1e-4"]`` -> ``{"loop": {"epochs": "3"}, "optim": {"lr": "1e-4"}}``.

    Values stay strings here; :func:`apply_overrides` coerces them to the declared field types.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set: expected KEY=VALUE (e.g. loop.epochs=3), got {item!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set both as a value and as a section")
            node = child
        node[parts[-1]] = value
    return out


def resolve_config(base: T, config_file: str | Path | None = None, sets: Sequence[str] = ()) -> T:
    """``base`` (a preset) <- ``config_file`` <- ``--set`` overrides, each checked and coerced."""
    config = base
    if config_file is not None:
        config = apply_overrides(config, load_config_file(config_file))
    if sets:
        config = apply_overrides(config, parse_set(sets))
    return config


def saved_dict(config: Any, run_dir: Path) -> dict[str, Any]:
    """The config as the run folder keeps it: a nested dict with portable paths (:func:`.paths.portable`).

    Checkpoints store it, and its :func:`fingerprint` guards resumes, so a moved run folder still resumes.
    """
    from .paths import portable

    return portable(config_to_dict(config), type(config), Path(run_dir))


def save_resolved(config: Any, folder: Path) -> Path:
    """Write ``config.json`` (and ``config.yaml`` when PyYAML is installed) into ``folder``; return the JSON."""
    from bamco_fast.data.jsonio import atomic_write_bytes

    data = saved_dict(config, folder)
    path = Path(folder) / "config.json"
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    try:
        import yaml
    except ImportError:
        return path
    atomic_write_bytes(Path(folder) / "config.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    return path


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def fingerprint(config: Any | dict[str, Any], ignore: Iterable[str] = RESUME_FREE_KEYS) -> str:
    """SHA-256 of the config without the keys that do not change the numerics (``ignore``)."""
    data = config if isinstance(config, dict) else config_to_dict(config)
    flat = {k: v for k, v in _flatten(data).items() if k not in set(ignore)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def diff_configs(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = RESUME_FREE_KEYS) -> list[str]:
    """Human-readable ``key: a -> b`` lines for the keys (outside ``ignore``) whose values differ."""
    fa, fb = _flatten(a), _flatten(b)
    skip = set(ignore)
    lines = []
    for key in sorted(set(fa) | set(fb)):
        if key in skip:
            continue
        if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
            lines.append(f"{key}: {fa.get(key, '<absent>')!r} -> {fb.get(key, '<absent>')!r}")
    return lines
