"""The development .env that scripts/run.sh writes: used by manage.py only while DEBUG is on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config.env import apply_dev_env_file

ROOT = Path(__file__).resolve().parents[2]


def test_it_fills_only_what_the_environment_leaves_unset(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nDEBUG=1\nSECURE_SSL_REDIRECT=0\nDATABASE_URL='sqlite:////x.db'\n")
    environ = {"DATABASE_URL": "postgres://elsewhere/db"}
    assert apply_dev_env_file(env_file, environ) == ["DEBUG", "SECURE_SSL_REDIRECT"]
    assert environ == {"DATABASE_URL": "postgres://elsewhere/db", "DEBUG": "1", "SECURE_SSL_REDIRECT": "0"}


def test_it_is_ignored_when_debug_is_off_or_the_file_is_missing(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=1\nSECURE_SSL_REDIRECT=0\n")
    environ = {"DEBUG": "0"}
    assert apply_dev_env_file(env_file, environ) == [] and environ == {"DEBUG": "0"}
    env_file.write_text("SECURE_SSL_REDIRECT=0\n")  # says nothing of DEBUG: production
    environ = {}
    assert apply_dev_env_file(env_file, environ) == [] and environ == {}
    assert apply_dev_env_file(tmp_path / "missing", environ) == []


def test_the_wsgi_module_never_reads_it():
    source = (ROOT / "config" / "wsgi.py").read_text() + (ROOT / "config" / "settings.py").read_text()
    assert "apply_dev_env_file" not in source and "read_env_file" not in source


def test_manage_py_says_when_it_used_it(tmp_path):
    # A copy of manage.py beside its own .env: the real checkout's .env is never touched.
    (tmp_path / "manage.py").write_text((ROOT / "manage.py").read_text())
    (tmp_path / ".env").write_text("DEBUG=1\nEXCHANGE_DEMO_MARKER=1\n")
    clean = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    clean["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "manage.py"), "shell", "-c", "import os; print(os.environ['DEBUG'])"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1"
    assert "development settings from .env: DEBUG, EXCHANGE_DEMO_MARKER" in result.stderr
