"""A newcomer's first run, end to end: `scripts/run.sh` in a fresh checkout on a free port, then
the README tour's shell blocks, verbatim, from another shell with no extra environment.

The checkout is a copy of exactly the files git tracks, as they are in the working tree (so an
uncommitted edit is tested too), and none of the ignored ones (no `.env`, database, keys or
`var/`): what `git clone` gives. Its `.venv` is a link to this checkout's, already installed:
`scripts/setup-venv.sh` then finds the requirements installed and goes on, so the test takes
seconds rather than the minutes of a first `pip install`, while every README command runs as
written.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

# The tour is shell commands run as a newcomer types them (git, bash, the checkout's scripts).
# ruff: noqa: S607

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="the README's tour uses curl"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout"),
]


def tour_blocks() -> list[str]:
    section = README.read_text().split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def fresh_checkout(dest: Path) -> Path:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree is not in the checkout either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    return dest


def newcomer_env(**extra: str) -> dict[str, str]:
    """A new terminal: none of the test run's settings (DEBUG, keys, DATABASE_URL)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")
    return {**{k: v for k, v in os.environ.items() if k in keep}, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"scripts/run.sh exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - an http:// URL built here
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} not ready after {timeout} s:\n{log.read_text()}")


def test_the_readme_tour_works_verbatim_in_a_fresh_checkout(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the tour runs on its own SQLite file: once per test run (the SQLite pass) is enough")
    blocks = tour_blocks()
    assert len(blocks) == 8, "the tour's blocks changed: update the checks below"
    clone = fresh_checkout(tmp_path / "exchange")

    # A busy port is refused before anything touches the database.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused = subprocess.run(
            ["scripts/run.sh"],
            cwd=clone,
            env=newcomer_env(PORT=str(busy.getsockname()[1])),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert refused.returncode != 0 and "cannot serve on 127.0.0.1:" in refused.stderr
    assert "PORT=" in refused.stderr  # and says what to do
    assert not (clone / "db.sqlite3").exists() and not (clone / "var" / "demo.env").exists()

    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["scripts/run.sh"],
            cwd=clone,
            env=newcomer_env(PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server, log)
        # The tour from another shell: each block in order, with a marker after each answer.
        script = "set -e\n" + "".join(f"{block}echo '@@ block {n} done'\n" for n, block in enumerate(blocks))
        tour = subprocess.run(
            ["bash", "-c", script], cwd=clone, env=newcomer_env(), capture_output=True, text=True, timeout=120
        )
        assert tour.returncode == 0, tour.stdout + tour.stderr
        answers = re.split(r"@@ block \d done\n", tour.stdout)
        source, me, picture, record, look, blind, dispute, audit = answers[:8]
        assert source == ""
        assert '"member":"DEMO_BANK_A"' in me and '"scopes":["submit","query"]' in me
        assert '"subject_found":true' in picture and '"institutions_with_open":' in picture
        assert '"last_90_days":' in picture and '"last_90_days":0' not in picture  # other lenders looked
        assert '"member_reference":"TOUR-0001"' in record and '"version":1' in record
        assert '"status":"active"' in look and '"reported_by_you":false' in look and "DEMO_BANK_A" not in look
        # The same inquiry with `cx` in blind mode: the blind value, then the same borrower found.
        assert re.search(r'"blind": "[A-Za-z0-9+/]{86}=="', blind), blind + tour.stderr
        assert re.search(r'"subject_found": ?true', blind) and re.search(r'"reported_by_you": ?false', blind)
        assert "11010519491231002X" not in blind.split("\n", 1)[1]
        assert '"status":"open"' in dispute and '"outcome":"upheld"' in dispute
        assert re.search(r"^OK \d+ events", audit, re.M), audit + tour.stderr
        # The second shell had no DEBUG and no keys: manage.py took them from run.sh's .env, and said so.
        assert "development settings from .env" in tour.stderr
        assert "SystemCheckError" not in tour.stderr
        assert f"http://127.0.0.1:{port}/admin/" in log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
