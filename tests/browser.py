"""Headless Chromium for tests: Debian's chromium package, installed if missing (as root, with apt-get)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
        found = shutil.which("chromium")
    return found


def rendered_dom(browser: str, page: str) -> str:
    """The page's DOM after it loaded (and its scripts ran) in headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"file://{page}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return done.stdout


def charts_rendered(dom: str) -> tuple[int, int]:
    """(drawn, total) as counted by the run report's own script in the browser."""
    match = re.search(r'id="charts-rendered">(\d+) of (\d+)<', dom)
    if not match:
        raise AssertionError("the report's chart count did not run in the browser")
    return int(match.group(1)), int(match.group(2))
