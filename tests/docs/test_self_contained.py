"""The repository explains itself: no file points outside it, every setting the code reads is in
docs/configuration.md with its default, every command of the exchange is in docs/commands.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from core.secrets import SECRET_NAMES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def tracked_text_files() -> list[Path]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout  # noqa: S607
    paths = [ROOT / name for name in names.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and p.suffix in {".py", ".md", ".sh", ".html", ".txt", ".toml", ".ini", ""}]


def test_no_file_points_outside_the_repository():
    # Spelled in two halves so that this file does not match itself.
    outside = ["../" + "shared", "CONTRACT" + ".md"]
    offenders = [
        f"{path.relative_to(ROOT)}: {needle}"
        for path in tracked_text_files()
        for needle in outside
        if needle in path.read_text(errors="replace")
    ]
    assert not offenders


def test_every_setting_read_from_the_environment_is_documented_with_its_default():
    settings_source = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    names |= set(SECRET_NAMES)  # read through core.secrets, not env_*()
    gunicorn = set(re.findall(r'environ\.get\("([A-Z][A-Z0-9_]+)"', (ROOT / "gunicorn.conf.py").read_text()))
    assert len(names) > 20 and gunicorn
    doc = (DOCS / "configuration.md").read_text()
    rows = {match[0]: match[1] for match in re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|(.*)$", doc, re.M)}
    missing = sorted(name for name in names | gunicorn if f"`{name}`" not in doc)
    assert not missing, f"not in docs/configuration.md: {missing}"
    for name in names:
        if name in rows:
            assert rows[name].count("|") >= 2 and rows[name].rstrip(" |").split("|")[-1].strip(), name


def test_every_command_of_the_exchange_is_documented():
    commands = sorted(
        path.stem
        for app in ("core", "members", "exchange", "audit")
        for path in (ROOT / app / "management" / "commands").glob("*.py")
        if path.stem != "__init__"
    )
    doc = (DOCS / "commands.md").read_text()
    assert not [name for name in commands if f"`{name}" not in doc]
