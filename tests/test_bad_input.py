"""Every command line refuses bad input the same way: exit status 2, one ``error:`` line naming the culprit,
no traceback, and nothing already on disk changed.

Each case runs as its own process (``python -m MODULE ARGS`` semantics, forked from a server that imported
the project once: :mod:`cli_forkserver`). Before and after each case, every file of the folders it could
touch (the runs it names, its inputs) is hashed with its mode; they must be equal. The runs are tiny and
real: a pretraining run on the packaged demo data with tiny towers, a VQA run on it with a tiny Llama, a
pretraining run stopped at step 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "train"))

from bad_input_cases import CASES, Case, build_world  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bad_input_world(tmp_path_factory):
    """The runs and files the cases name (:func:`bad_input_cases.build_world`); a read-only mount is undone."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = build_world(tmp_path_factory.mktemp("bad_input"))
    finally:
        torch.set_num_threads(threads)
    yield world
    if world.paths["pre_readonly"]:
        subprocess.run(["umount", world.paths["pre_readonly"]], capture_output=True)


class ForkServer:
    """One :mod:`cli_forkserver` process; :meth:`run` returns ``(code, stdout, stderr)``."""

    def __init__(self, cwd: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "cli_forkserver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, module: str, argv: list[str]) -> tuple[int, str, str]:
        self.proc.stdin.write(json.dumps({"module": module, "argv": argv, "cwd": str(self.cwd)}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["code"], answer["stdout"], answer["stderr"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _snapshot(folders: list[Path]) -> dict[str, tuple[str, int]]:
    """Path -> (sha256, mode) of every file under ``folders`` (a missing folder is empty)."""
    out = {}
    for folder in folders:
        paths = (
            [folder]
            if folder.is_file()
            else sorted(p for p in folder.rglob("*") if p.is_file())
            if folder.exists()
            else []
        )
        for path in paths:
            out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return out


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    changed: list[str]
    created: list[str]


@pytest.fixture(scope="module")
def outcomes(bad_input_world) -> dict[str, Outcome]:
    """Every case, run once (two servers side by side)."""
    world = bad_input_world
    halves = [CASES[0::2], CASES[1::2]]
    servers = [ForkServer(world.root) for _ in halves]

    def run(server: ForkServer, cases: list[Case]) -> dict[str, Outcome]:
        done = {}
        for case in cases:
            if case.needs and not world.paths[case.needs]:
                continue
            guard = [Path(p.format(**world.paths)) for p in case.guard]
            for setup in case.setup:
                setup(world)
            before = _snapshot(guard)
            code, out, err = server.run(case.module, [a.format(**world.paths) for a in case.argv])
            after = _snapshot(guard)
            changed = sorted(k for k in before if after.get(k) != before[k])
            created = sorted(set(after) - set(before))
            done[case.name] = Outcome(code, out, err, changed, created)
        return done

    try:
        with ThreadPoolExecutor(len(halves)) as pool:
            results = list(pool.map(run, servers, halves))
    finally:
        for server in servers:
            server.close()
    return {k: v for part in results for k, v in part.items()}


def test_the_suite_is_large():
    assert len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES)
    commands = {c.module + (f" {c.argv[0]}" if c.module == "bamco_fast.train" else "") for c in CASES}
    assert (
        len(commands) == 8
    )  # every command line: train pretrain|vqa, predict, evaluate, knowledge, data, ...


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(outcomes, bad_input_world, case):
    if case.needs and not bad_input_world.paths[case.needs]:
        pytest.skip(
            f"{case.needs}: a read-only file system cannot be mounted here (permissions do not stop root)"
        )
    got = outcomes[case.name]
    assert got.code == 2, f"exit {got.code}; stderr: {got.stderr[-800:]}"
    assert "Traceback" not in got.stderr and "Traceback" not in got.stdout, got.stderr[-1500:]
    lines = [
        line for line in got.stderr.splitlines() if line.startswith("error:") or line.startswith("usage:")
    ]
    assert lines, got.stderr[-800:]
    message = got.stderr if case.argparse else lines[-1]
    assert re.search(
        case.expect.format(**{k: re.escape(v) for k, v in bad_input_world.paths.items()}), message
    ), message
    assert not got.changed, f"files changed: {got.changed}"
    assert not got.created, f"files created: {got.created}"


def test_a_known_error_shows_its_traceback_on_request(bad_input_world):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BAMCO_FAST_DEBUG": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bamco_fast.predict",
            "--run",
            str(bad_input_world.root / "nowhere"),
            "--image",
            "x.png",
            "--question",
            "q?",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=bad_input_world.root,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and "Traceback" in proc.stderr
        and proc.stderr.rstrip().splitlines()[-1].startswith("error:")
    )


def test_an_unexpected_error_is_a_bug_with_its_traceback(bad_input_world, monkeypatch, capsys):
    from bamco_fast.boundary import run_command

    def broken() -> int:
        raise AssertionError("a bug")

    assert run_command("test", broken) == 1
    assert "Traceback" in capsys.readouterr().err


def test_world_cleanup(bad_input_world):
    """The fixtures' folders exist (the cases above name them)."""
    assert (bad_input_world.root / "pretrain" / "knowledge_space").is_dir()
    shutil.rmtree(bad_input_world.root / "scratch", ignore_errors=True)
