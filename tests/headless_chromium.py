"""Load a page in headless Chromium: its DOM after the scripts ran, a screenshot and the console lines.

Tests that need it skip (with the reason) when no ``chromium`` is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def chromium() -> str:
    """The Chromium executable, or skip the test."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium): no headless-browser check")


def render(url: str, workdir: Path, *, screenshot: Path, wait_ms: int = 5000, size: str = "1400,1000"):
    """``(DOM after the scripts ran, console lines)`` of ``url``; the screenshot is written to ``screenshot``.

    ``wait_ms`` of virtual time lets the page's scripts (and its requests) finish before the capture.
    """
    command = [
        chromium(),
        *FLAGS,
        f"--user-data-dir={workdir / 'chromium-profile'}",
        f"--virtual-time-budget={wait_ms}",
        f"--window-size={size}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def page_errors(console: list[str]) -> list[str]:
    """Console lines that report a script error or a resource that failed to load."""
    keys = ("Uncaught", "Failed to load resource", "net::ERR_", "TypeError", "ReferenceError", "SyntaxError")
    return [line for line in console if any(key in line for key in keys)]


def check_screenshot(path: Path) -> None:
    """A PNG of the window was written."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, f"no screenshot in {path}"
