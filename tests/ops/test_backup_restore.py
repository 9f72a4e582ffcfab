"""A backup taken with pg_dump restores into a fresh database that holds the same data and whose
audit chain still verifies (docs/operations.md, "Backups")."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from exchange.models import Consent, Record
from tests.factories import consent, record

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("os.environ.get('DATABASE_URL', '').startswith('sqlite')", reason="pg_dump is PostgreSQL's"),
]


def _pg(tool: str, *args: str) -> subprocess.CompletedProcess:
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    base = ["-h", db["HOST"] or "localhost", "-p", str(db["PORT"] or 5432), "-U", db["USER"]]
    return subprocess.run([f"{PG_BIN}/{tool}", *base, *args], env=env, capture_output=True, check=True)


def test_a_dump_restores_with_the_same_data_and_a_verifying_audit_chain(bank_a, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump is PostgreSQL's")
    assert (
        bank_a.client.post(
            "/api/v1/records", {"records": [record("B-1", 1), record("B-2", 2)]}, format="json"
        ).status_code
        == 201
    )
    assert bank_a.client.post("/api/v1/consents", consent(1), format="json").status_code == 201
    call_command("seal_audit", stdout=io.StringIO())

    dump = tmp_path / "exchange.dump"
    _pg("pg_dump", "-Fc", "-f", str(dump), connection.settings_dict["NAME"])
    restored = f"restore_{uuid.uuid4().hex[:8]}"
    _pg("createdb", restored)
    try:
        _pg("pg_restore", "--no-owner", "-d", restored, str(dump))
        db = connection.settings_dict
        host = f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}"
        url = f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{host}/{restored}"
        env = {**os.environ, "DATABASE_URL": url}
        verified = subprocess.run(
            [sys.executable, "manage.py", "verify_audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("OK ")
        counted = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from exchange.models import Record, Consent; r = Record.objects.first(); "
                "print(Record.objects.count(), Consent.objects.count(), r.member_reference[:2])",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert counted.stdout.strip().splitlines()[-1].split() == [
            str(Record.objects.count()),
            str(Consent.objects.count()),
            "B-",
        ]
    finally:
        _pg("dropdb", restored)
