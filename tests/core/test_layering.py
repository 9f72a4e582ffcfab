"""core/ is the plain package every app uses: it must not import config (settings code)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_core_module_imports_config():
    offenders = [path for path in CORE.rglob("*.py") if "config" in imported_packages(path)]
    assert sorted(str(path.relative_to(CORE)) for path in offenders) == []


def test_the_check_sees_an_import_of_config(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from config.env import decode_key\nimport os\n")
    assert imported_packages(sample) == {"config", "os"}
