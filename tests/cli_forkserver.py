"""Run many command lines as real processes without paying for ``import torch`` each time.

The server is a fresh Python process that imports the project's command-line modules once (and nothing
that starts threads), then, for each request read from stdin as a JSON line ``{"module", "argv", "cwd",
"env"}``, forks a child that runs ``python -m MODULE ARGV`` exactly as the interpreter would
(``runpy.run_module(..., run_name="__main__", alter_sys=True)``; an uncaught exception prints its
traceback and exits 1) with its stdout and stderr in files; the parent answers with a JSON line
``{"code", "stdout", "stderr"}``. Each command is its own process with its own exit status.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback

PRELOAD = (
    "bamco_fast",
    "bamco_fast.boundary",
    "bamco_fast.train.cli",
    "bamco_fast.predict",
    "bamco_fast.evaluate.cli",
    "bamco_fast.knowledge.cli",
    "bamco_fast.data.cli",
    "bamco_fast.serve.cli",
    "bamco_fast.models.random_weights",
    "transformers",
)


def _child(request: dict, out_path: str, err_path: str) -> None:
    os.chdir(request["cwd"])
    os.environ.update(request.get("env", {}))
    out = os.open(out_path, os.O_WRONLY)
    err = os.open(err_path, os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = [request["module"], *request["argv"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # as the interpreter does for an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        with (
            tempfile.NamedTemporaryFile(delete=False) as out,
            tempfile.NamedTemporaryFile(delete=False) as err,
        ):
            pass
        pid = os.fork()
        if pid == 0:
            _child(request, out.name, err.name)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        with (
            open(out.name, encoding="utf-8", errors="replace") as f_out,
            open(err.name, encoding="utf-8", errors="replace") as f_err,
        ):
            answer = {"code": code, "stdout": f_out.read(), "stderr": f_err.read()}
        os.unlink(out.name)
        os.unlink(err.name)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
