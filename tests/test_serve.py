"""``python -m bamco_fast.serve``: the local question page answers like ``predict``; bad input gets a message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from headless_chromium import check_screenshot, page_errors, render
from vqa_helpers import png_bytes, shared_data, trained_slake_run

from bamco_fast.serve import main
from bamco_fast.serve.answers import UploadError, UploadLimits, check_image

pytestmark = pytest.mark.usefixtures("one_thread")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise AssertionError(
                f"the server stopped (status {process.returncode}):\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server on a free local port, for the tiny Slake run: ``(run folder, URL)``."""
    pytest.importorskip("gradio_client", reason="the serve extra (gradio) is not installed")
    run = trained_slake_run()[0]
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1"}
    command = [sys.executable, "-m", "bamco_fast.serve", "--run", str(run), "--port", str(port)]
    with log.open("w") as handle:
        process = subprocess.Popen(
            [*command, "--device", "cpu", "--max-megapixels", "1"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log)
        yield run, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_answers_over_http_like_predict(server, capsys, tmp_path):
    from gradio_client import Client, handle_file

    from bamco_fast.predict import main as predict

    run, url = server
    image = shared_data("slake", "imgs", "xmlab1", "source.jpg")
    question = "Which organ is shown?"
    client = Client(url, verbose=False, download_files=str(tmp_path))
    answer, details, message = client.predict(handle_file(str(image)), None, question, api_name="/answer")
    assert predict(["--run", str(run), "--image", str(image), "--question", question, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert message == "" and answer == expected["prediction"]
    assert f"<b>Retrieved entity:</b> {expected['retrieved_entity']}" in details
    assert (
        details.count('<img src="data:image/jpeg;base64,') == 8 and "Knowledge text</b> (question)" in details
    )
    table, note = client.predict(
        handle_file(str(image)), None, f"{question}\nIs there a fracture?", api_name="/answer_batch"
    )
    assert table["data"][0] == [question, expected["prediction"], expected["retrieved_entity"]]
    assert len(table["data"]) == 2 and "2 questions answered in one batch" in note


def test_bad_uploads_get_a_message_in_the_page(server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server[1], verbose=False, download_files=str(tmp_path))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(10, size=1200))  # 1.44 megapixels; the server accepts 1
    for path, expected in (
        (text, "is not an image this page can read"),
        (big, "1200 x 1200 = 1.44 megapixels; images up to 1 megapixels"),
    ):
        answer, details, message = client.predict(
            handle_file(str(path)), None, "what is this?", api_name="/answer"
        )
        assert answer == "" and details == "" and expected in message, message
    answer, _, message = client.predict(None, None, "what is this?", api_name="/answer")
    assert answer == "" and "Choose an image first" in message


def test_served_page_renders_in_chromium(server, tmp_path):
    dom, console = render(server[1], tmp_path, screenshot=tmp_path / "serve.png", wait_ms=8000)
    check_screenshot(tmp_path / "serve.png")
    assert not page_errors(console), console
    assert "Upload an image" in dom and "Several questions about the same image" in dom


def test_upload_checks(tmp_path):
    limits = UploadLimits(max_bytes=2000, max_pixels=10_000)
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(3, size=50))
    assert check_image(good, limits) == good
    heavy = tmp_path / "heavy.bin"
    heavy.write_bytes(b"\0" * 3000)
    cases = [
        (heavy, "The upload is 2.93 KB; images up to 1.95 KB"),
        (tmp_path / "gone.png", "no longer available"),
        (None, "Choose an image"),
    ]
    for path, message in cases:
        with pytest.raises(UploadError, match=message):
            check_image(path, limits)
    wide = tmp_path / "wide.png"
    wide.write_bytes(png_bytes(3, size=120))
    with pytest.raises(UploadError, match="120 x 120 = 0.0144 megapixels; images up to 0.01 megapixels"):
        check_image(wide, limits)


def test_bad_arguments_exit_2_in_one_line_before_starting(tmp_path, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    cases = [
        (["--run", str(tmp_path / "missing")], "--run: expected a VQA run folder"),
        (["--run", str(tmp_path)], "not a VQA run folder (no run.json"),
        (["--run", str(run), "--port", "70000"], "--port: expected an integer in 1..65535, got '70000'"),
        (["--run", str(run), "--port", "http"], "--port: expected an integer in 1..65535, got 'http'"),
        (["--run", str(run), "--max-upload-mb", "0"], "--max-upload-mb: expected a number"),
        (
            ["--run", str(run), "--port", str(busy.getsockname()[1])],
            "--port: expected a free port on 127.0.0.1",
        ),
    ]
    for args, message in cases:
        start = time.monotonic()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
        assert time.monotonic() - start < 5  # nothing was loaded or started
    busy.close()


def test_importing_the_package_does_not_import_gradio():
    code = "import sys, bamco_fast, bamco_fast.serve; print('gradio' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
