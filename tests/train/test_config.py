"""Typed configs: files, --set overrides with type coercion, unknown keys, resolved config, fingerprint."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from bamco_fast.train.core.config import (
    ConfigError,
    LoopConfig,
    OptimConfig,
    config_to_dict,
    fingerprint,
    flat_keys,
    parse_set,
    resolve_config,
    save_resolved,
)


@dataclasses.dataclass
class _Data:
    name: str = "slake"
    fraction: float = 0.1
    kinds: tuple[str, ...] = ("entity", "definition")
    limit: int | None = None


@dataclasses.dataclass
class _Run:
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: _Data = dataclasses.field(default_factory=_Data)
    out: str = "runs/x"


def test_set_overrides_are_coerced_to_the_field_types():
    cfg = resolve_config(
        _Run(),
        sets=[
            "loop.epochs=3",
            "optim.lr=1e-4",
            "loop.progress=false",
            "optim.betas=0.9,0.98",
            'data.kinds=["entity"]',
            "data.limit=7",
            "data.fraction=1",
        ],
    )
    assert cfg.loop.epochs == 3 and cfg.optim.lr == 1e-4 and cfg.loop.progress is False
    assert cfg.optim.betas == (0.9, 0.98) and cfg.data.kinds == ("entity",)
    assert cfg.data.limit == 7 and isinstance(cfg.data.fraction, float)
    assert resolve_config(cfg, sets=["data.limit=none"]).data.limit is None
    assert cfg.loop.batch_size == 48  # untouched keys keep their values


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'loop\.epoch'.*loop\.epochs.*loop\.seed"):
        resolve_config(_Run(), sets=["loop.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'lop'.*loop.*optim"):
        resolve_config(_Run(), sets=["lop.epochs=3"])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("loop.epochs=three", r"'loop\.epochs': expected an integer, got 'three'"),
        ("loop.epochs=0", r"'loop\.epochs': expected an integer >= 1, got 0"),
        ("loop.progress=maybe", r"'loop\.progress': expected a boolean"),
        ("optim.betas=0.9", r"'optim\.betas': expected 2 values"),
        ("loop.precision=fp16", r"'loop\.precision': expected 'bf16' or 'fp32', got 'fp16'"),
        ("epochs", r"--set: expected KEY=VALUE"),
    ],
)
def test_bad_values_name_key_expected_and_received(item, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(_Run(), sets=[item])


def test_yaml_and_json_files_then_set(tmp_path):
    (tmp_path / "a.yaml").write_text("loop:\n  epochs: 5\noptim:\n  lr: 2.0e-3\ndata:\n  name: vqa-rad\n")
    (tmp_path / "a.json").write_text(json.dumps({"loop": {"epochs": 5}, "optim": {"lr": 0.002}}))
    from_yaml = resolve_config(_Run(), tmp_path / "a.yaml", ["loop.epochs=6"])
    assert (from_yaml.loop.epochs, from_yaml.optim.lr, from_yaml.data.name) == (6, 2e-3, "vqa-rad")
    assert resolve_config(_Run(), tmp_path / "a.json").loop.epochs == 5
    (tmp_path / "bad.yaml").write_text("loop:\n  epochz: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'loop\.epochz'"):
        resolve_config(_Run(), tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"--config: expected a \.yaml"):
        resolve_config(_Run(), tmp_path / "a.txt") if (tmp_path / "a.txt").write_text("x") else None
    with pytest.raises(ConfigError, match="file not found"):
        resolve_config(_Run(), tmp_path / "missing.yaml")


def test_resolved_config_is_saved_with_normal_mode_and_reloads(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_resolved(resolve_config(_Run(), sets=["loop.epochs=2"]), tmp_path)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert (tmp_path / "config.yaml").is_file()
    again = resolve_config(_Run(), path)
    assert config_to_dict(again) == json.loads(path.read_text())
    assert again.optim.betas == (0.9, 0.999)


def test_fingerprint_ignores_only_run_control_keys():
    base = _Run()
    assert fingerprint(base) == fingerprint(
        resolve_config(base, sets=["loop.progress=false", "out=elsewhere"])
    )
    assert fingerprint(base) != fingerprint(resolve_config(base, sets=["optim.lr=2e-3"]))
    assert "loop.epochs" in flat_keys(_Run) and "data.kinds" in flat_keys(base)
    assert parse_set(["a.b.c=1"]) == {"a": {"b": {"c": "1"}}}
