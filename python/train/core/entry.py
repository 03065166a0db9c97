"""One entry for both stages: preset -> config file -> ``--set`` -> run folder -> runtime -> work -> exit code.

``python -m bamco_fast.train STAGE`` takes the same flags for every stage:

``--preset NAME``    the starting configuration (a new run only);
``--config FILE``    a YAML/JSON file applied over it;
``--set KEY=VALUE``  overrides (repeatable; an unknown key lists the valid ones);
``--out DIR``        the run folder (a new run; default: the preset's, or a numbered sibling when taken);
``--resume RUN``     continue RUN with its saved configuration (``--set`` may change only the keys that do
                     not change the numerics: progress bars, threads, device, stop step, checkpoint cadence);
``--eval-only RUN``  evaluate RUN again (its saved configuration, ``--config``/``--set`` on top).

Everything the request needs is checked before anything is written: the flags against each other, the
run folder (a folder, writable; a new run's folder must not already hold a run), the configuration, and
the stage's own inputs (:attr:`Stage.check`: data files, model locations). A refused request changes
nothing on disk. Exit codes: 0 done (or stopped at ``loop.stop_at_step``), 2 a known error (one line on
stderr, :mod:`bamco_fast.boundary`), 130 interrupted (a resumable checkpoint was written), 1 a bug.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bamco_fast.boundary import UsageError, run_command
from bamco_fast.data.jsonio import is_read_only

from .config import RESUME_FREE_KEYS, apply_overrides, config_from_dict, parse_set, resolve_config
from .errors import ConfigError
from .paths import resolved

__all__ = ["Request", "Stage", "add_arguments", "run_new", "run_stage"]

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Request:
    """What the command asks for: ``mode`` ``"new"``, ``"resume"`` or ``"eval"``, on ``run_dir``."""

    mode: str
    run_dir: Path
    args: argparse.Namespace
    checkpoint: Path | None = None  # --resume of a checkpoint file


@dataclass(frozen=True)
class Stage:
    """A training stage as the entry sees it.

    Attributes:
        name: ``"pretrain"`` or ``"vqa"``.
        config_cls: its typed configuration (a dataclass with an ``out`` field).
        presets: preset name -> function returning a config; ``default_preset`` names the default.
        add_arguments: the stage's own flags.
        apply_arguments: ``(config, args) -> config`` with those flags applied (new runs).
        check: ``(config, request)``: raise before any work on bad input (data files, model locations).
        run: ``(config, request) -> int``: train (``new``/``resume``) or evaluate (``eval``); returns the
            exit code (130 when interrupted).
        is_run: ``(saved config dict) -> bool``: whether a folder's ``config.json`` is a run of this stage.
    """

    name: str
    config_cls: type
    presets: Mapping[str, Callable[[], Any]]
    default_preset: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    apply_arguments: Callable[[Any, argparse.Namespace], Any]
    check: Callable[[Any, Request], None]
    run: Callable[[Any, Request], int]
    is_run: Callable[[dict], bool]


def add_arguments(parser: argparse.ArgumentParser, stage: Stage) -> None:
    """The flags every stage takes (see the module docstring), then the stage's own."""
    parser.add_argument(
        "--preset",
        default=None,
        help=f"starting configuration (default {stage.default_preset}); one of {', '.join(stage.presets)}",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file applied over the preset")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. loop.epochs=3",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run folder of a new run (default: the preset's)"
    )
    parser.add_argument(
        "--resume", type=Path, default=None, metavar="RUN", help="continue RUN with its saved configuration"
    )
    parser.add_argument(
        "--eval-only", type=Path, default=None, metavar="RUN", help="evaluate the finished run RUN again"
    )
    stage.add_arguments(parser)


def run_stage(stage: Stage, args: argparse.Namespace) -> int:
    """Run ``stage`` inside the error boundary (see the module docstring)."""
    return run_command(f"train {stage.name}", lambda: _run(stage, args))


def _run(stage: Stage, args: argparse.Namespace) -> int:
    config, request = resolve_request(stage, args)
    check_run_folder(request)
    stage.check(config, request)
    return stage.run(config, request)


def run_new(stage: Stage, config: Any) -> int:
    """Train ``config`` as a new run in ``config.out`` (the programmatic form of a command without
    ``--resume``/``--eval-only``): the same checks, then the stage's work. Errors propagate."""
    request = Request("new", Path(config.out), argparse.Namespace())
    check_run_folder(request)
    stage.check(config, request)
    return stage.run(config, request)


# ------------------------------------------------------------------------------------------- requests
def resolve_request(stage: Stage, args: argparse.Namespace) -> tuple[Any, Request]:
    """The configuration and the request of ``args``; reads files, writes nothing."""
    if args.resume is not None and args.eval_only is not None:
        raise UsageError("--resume and --eval-only: expected one of them, got both")
    if args.resume is not None or args.eval_only is not None:
        return _existing_run(stage, args)
    name = args.preset or stage.default_preset
    if name not in stage.presets:
        raise UsageError(f"--preset: expected one of {', '.join(stage.presets)}, got {name!r}")
    config = resolve_config(stage.presets[name](), args.config, args.sets)
    config = stage.apply_arguments(config, args)
    explicit = args.out is not None or any(item.split("=", 1)[0].strip() == "out" for item in args.sets)
    if args.out is not None:
        config = dataclasses.replace(config, out=str(args.out))
    config = _fresh_out(config, explicit)
    return config, Request("new", Path(config.out), args)


def _existing_run(stage: Stage, args: argparse.Namespace) -> tuple[Any, Request]:
    resume = args.resume is not None
    flag = "--resume" if resume else "--eval-only"
    target = Path(args.resume if resume else args.eval_only)
    checkpoint = None
    if resume and target.is_file() and target.suffix == ".pt":
        checkpoint, target = target, target.parent.parent  # RUN/checkpoints/step_*.pt
    if not target.is_dir():
        what = "a file" if target.exists() else "a path that does not exist"
        raise UsageError(f"{flag}: expected a {stage.name} run folder, got {str(target)!r}, {what}")
    if args.preset is not None:
        raise UsageError(
            f"{flag} RUN uses RUN's saved configuration; --preset cannot change it (start a new run with --out)"
        )
    if args.out is not None and Path(os.path.abspath(args.out)) != Path(os.path.abspath(target)):
        raise UsageError(f"{flag} RUN writes into RUN; --out {args.out} names another folder")
    saved = read_saved_config(stage, target, flag)
    if resume:
        if args.config is not None:
            raise UsageError(
                "--resume RUN continues RUN with its saved configuration; --config cannot change it"
            )
        _check_resume_sets(args.sets)
        # the stop that ended the first part does not stop the continuation (unless --set again)
        config = apply_overrides(apply_overrides(saved, {"loop": {"stop_at_step": 0}}), parse_set(args.sets))
    else:
        config = stage.apply_arguments(resolve_config(saved, args.config, args.sets), args)
    config = dataclasses.replace(config, out=str(target))
    return config, Request("resume" if resume else "eval", target, args, checkpoint)


def read_saved_config(stage: Stage, run_dir: Path, flag: str) -> Any:
    """The configuration saved in ``run_dir/config.json``, its run-relative paths resolved."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UsageError(
            f"{flag}: {run_dir} holds no {CONFIG_FILE}; expected the folder of a {stage.name} run"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{flag}: {path} is not a readable JSON config ({exc})") from None
    if not isinstance(data, dict) or not stage.is_run(data):
        raise UsageError(
            f"{flag}: {run_dir} is not a {stage.name} run (its {CONFIG_FILE} is another stage's)"
        )
    try:
        return config_from_dict(stage.config_cls, resolved(data, stage.config_cls, run_dir))
    except ConfigError as exc:
        raise UsageError(f"{flag}: {path}: {exc}") from None


def _check_resume_sets(sets: list[str]) -> None:
    keys = [item.split("=", 1)[0].strip() for item in sets]
    changing = [k for k in keys if k not in RESUME_FREE_KEYS]
    if changing:
        raise UsageError(
            f"--resume: --set {', '.join(changing)} would change the run's numerics; a resume may set only "
            f"{', '.join(sorted(k for k in RESUME_FREE_KEYS if k != 'out'))} (start a new run with --out for other changes)"
        )


def _fresh_out(config: Any, explicit: bool) -> Any:
    """Never train over a run: an explicit ``out`` holding one is an error, a default one gets a sibling."""
    out = Path(config.out)
    if not _holds_run(out):
        return config
    if explicit:
        raise UsageError(
            f"--out: {out} already holds a run (checkpoints/); continue it with --resume {out}, evaluate it with "
            "--eval-only, or choose another --out"
        )
    n = 2
    while _holds_run(Path(f"{config.out}-{n}")):
        n += 1
    return dataclasses.replace(config, out=f"{config.out}-{n}")


def _holds_run(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.iterdir())


# ----------------------------------------------------------------------------------------- run folder
def check_run_folder(request: Request) -> None:
    """The run folder can hold this run's outputs: a folder (or creatable), whose files can be written."""
    flag = {"new": "--out", "resume": "--resume", "eval": "--eval-only"}[request.mode]
    folder = Path(request.run_dir)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag}: expected a run folder, got {str(folder)!r}, which is a file")
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise UsageError(f"{flag}: {str(existing)!r} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag}: cannot create the run folder {str(folder)!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write into {str(existing)!r} (permission denied)")
    for name in ("metrics.jsonl", CONFIG_FILE, "checkpoints/latest.json", "run.json"):
        path = folder / name
        if path.is_file() and request.mode != "eval" and is_read_only(path):
            raise UsageError(f"{flag}: {path} is read-only; the run must rewrite it")
    if (folder / "checkpoints").is_dir() and not os.access(folder / "checkpoints", os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write into {folder / 'checkpoints'} (permission denied)")
