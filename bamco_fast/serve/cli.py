"""``python -m bamco_fast.serve --run RUN [--host 127.0.0.1] [--port 7860]``: ask a trained run questions.

Starts a local web page (Gradio) to upload or pick an image, type a question and see the answer, the
retrieved entity with its intra-class images, the knowledge text and the time taken, and to answer
several questions about one image in a batch. Bound to ``127.0.0.1`` by default (only this machine can
reach it). Uploads larger than ``--max-upload-mb`` or ``--max-megapixels`` are refused with a message.

Exit status: 0 when the server stops, 2 on bad arguments (one line naming the argument, before anything
starts: no model is loaded and no port is opened).
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServeOptions", "build_parser", "main", "parse_options"]


@dataclass(frozen=True)
class ServeOptions:
    """Checked options of the server (see :func:`build_parser` for their meaning)."""

    run: Path
    host: str = "127.0.0.1"
    port: int = 7860
    knowledge_space: Path | None = None
    device: str = "auto"
    max_upload_mb: float = 20.0
    max_megapixels: float = 50.0
    examples: int = 24


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.serve",
        description="Ask a trained BaMCo VQA run questions in a local web page.",
    )
    parser.add_argument("--run", required=True, help="run folder of python -m bamco_fast.train vqa")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    parser.add_argument("--port", default="7860", help="port, 1-65535 (default 7860)")
    parser.add_argument(
        "--knowledge-space", default=None, help="knowledge-space run, if it moved since training"
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--max-upload-mb", default="20", help="largest upload in MB (default 20)")
    parser.add_argument("--max-megapixels", default="50", help="largest image in megapixels (default 50)")
    parser.add_argument("--examples", default="24", help="evaluation images offered as examples (default 24)")
    return parser


def _number(value: str, name: str, kind: type, low: float, high: float | None = None):
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name}: expected {what} in {span}, got {value!r}")
    return number


def _check_address(host: str, port: int) -> None:
    """Fail now, before the model is loaded, when ``host:port`` cannot be listened on (e.g. in use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"--host: expected an address of this machine, got {host!r} ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(f"--port: expected a free port on {host}, got {port} ({exc.strerror})") from None


def parse_options(args: argparse.Namespace) -> ServeOptions:
    """Check the arguments (the run folder is a VQA run, the port and limits are in range)."""
    from ..inference import read_run_info

    run = Path(args.run)
    if not run.is_dir():
        what = "is a file" if run.exists() else "does not exist"
        raise ValueError(f"--run: expected a VQA run folder, got {args.run!r}, which {what}")
    read_run_info(run)  # a RunError (ValueError) naming the folder when it is not a run
    if not args.host.strip():
        raise ValueError("--host: expected an address such as 127.0.0.1, got an empty string")
    space = Path(args.knowledge_space) if args.knowledge_space else None
    if space is not None and not space.is_dir():
        raise ValueError(f"--knowledge-space: expected a folder, got {args.knowledge_space!r}")
    host, port = args.host.strip(), _number(args.port, "--port", int, 1, 65535)
    _check_address(host, port)
    return ServeOptions(
        run=run,
        host=host,
        port=port,
        knowledge_space=space,
        device=args.device,
        max_upload_mb=_number(args.max_upload_mb, "--max-upload-mb", float, 0.001),
        max_megapixels=_number(args.max_megapixels, "--max-megapixels", float, 0.001),
        examples=_number(args.examples, "--examples", int, 0),
    )


def serve(options: ServeOptions) -> int:
    """Load the run, build the page and serve it until interrupted."""
    from ..inference import load_run
    from .answers import Answerer, UploadLimits, evaluation_examples
    from .app import build_app, launch

    run = load_run(options.run, knowledge_space=options.knowledge_space, device=options.device)
    limits = UploadLimits(
        max_bytes=int(options.max_upload_mb * 2**20), max_pixels=int(options.max_megapixels * 1e6)
    )
    examples = evaluation_examples(options.run, options.examples) if options.examples else []
    title = f"Ask {options.run.absolute().name} (BaMCo VQA run)"
    app = build_app(Answerer(run, limits), examples, title=title)
    print(f"serving {options.run} on http://{options.host}:{options.port} (Ctrl-C stops)", flush=True)
    launch(app, host=options.host, port=options.port, max_bytes=limits.max_bytes)
    return 0


def _run(args) -> int:
    options = parse_options(args)
    if importlib.util.find_spec("gradio") is None:
        raise ValueError(
            "python -m bamco_fast.serve needs Gradio: pip install 'bamco_fast[serve]' (or 'gradio>=5')"
        )
    try:
        return serve(options)
    except KeyboardInterrupt:  # Ctrl-C is how the page is stopped
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status (one line and 2
    for bad input or a port taken meanwhile: :mod:`bamco_fast.boundary`)."""
    from ..boundary import run_command

    args = build_parser().parse_args(argv)
    return run_command("serve", lambda: _run(args))
