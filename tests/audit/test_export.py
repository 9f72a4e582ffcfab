"""Compliance exports: sealed events in seq order with a signed manifest; any changed byte fails."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.chain import EXPORT_FIELDS
from audit.export import export_events, manifest_path, render_manifest, verify_export
from audit.models import AuditEvent
from audit.sealing import seal_pending
from audit.signing import manifest_message, public_key_b64
from tests.audit.conftest import insert_events_raw, make_events, run_sql

PERSONAL = ("id_number", "name", "phone", "member_reference", "reference")


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def export(tmp_path: Path, name: str = "audit.jsonl", **options) -> Path:
    output = tmp_path / name
    export_events(output=output, actor="test", **options)
    return output


@pytest.mark.django_db
@pytest.mark.slow
def test_an_export_of_100000_events_verifies_and_a_changed_byte_fails(tmp_path):
    insert_events_raw(100_000)
    assert seal_pending().sealed == 100_000
    output = export(tmp_path)
    manifest = json.loads(manifest_path(output).read_text())
    assert manifest["count"] == 100_000
    assert manifest["first"]["seq"] == 1 and manifest["last"]["seq"] == 100_000
    assert verify_export(output, public_key=public_key_b64()).ok

    original = output.read_bytes()
    size = len(original)
    for offset in (0, 17, size // 2, size - 2):
        flip(output, offset)
        result = verify_export(output, public_key=public_key_b64())
        assert not result.ok and "SHA-256" in result.message
        output.write_bytes(original)
    assert verify_export(output, public_key=public_key_b64()).ok

    manifest_file = manifest_path(output)
    original = manifest_file.read_bytes()
    for offset in range(0, len(original), 5):
        flip(manifest_file, offset)
        assert not verify_export(output, public_key=public_key_b64()).ok, f"manifest byte {offset}"
        manifest_file.write_bytes(original)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_byte_of_a_small_export_and_its_manifest_is_covered(tmp_path, fmt):
    make_events(3)
    seal_pending()
    output = export(tmp_path, f"audit.{fmt}", fmt=fmt)
    key = public_key_b64()
    assert verify_export(output, public_key=key).ok
    step = 1 if fmt == "jsonl" else 3  # every byte once is enough; CSV differs only in the file's layout
    for path in (output, manifest_path(output)):
        original = path.read_bytes()
        for offset in range(0, len(original), step):
            flip(path, offset)
            assert not verify_export(output, public_key=key).ok, f"{path.name} byte {offset}"
            path.write_bytes(original)


@pytest.mark.django_db
def test_export_lines_carry_every_field_in_seq_order_sealed_only(tmp_path):
    make_events(4)
    seal_pending()
    make_events(2)  # not sealed: not exported
    output = export(tmp_path)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]
    assert all(set(line) == set(EXPORT_FIELDS) for line in lines)
    stored = AuditEvent.objects.get(seq=2)
    assert lines[1]["hash"] == stored.hash and lines[1]["prev_hash"] == lines[0]["hash"]

    csv_output = export(tmp_path, "audit.csv", fmt="csv")
    with open(csv_output, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["seq"]) for row in rows] == [1, 2, 3, 4]
    assert rows[1]["hash"] == stored.hash
    assert verify_export(csv_output, public_key=public_key_b64()).ok


@pytest.mark.django_db
def test_a_member_export_is_not_contiguous_but_each_line_still_verifies(tmp_path):
    make_events(3, member_code="BANKA")
    make_events(2, member_code="BANKB")
    make_events(3, member_code="BANKA")
    seal_pending()
    output = export(tmp_path, member="BANKB")
    manifest = json.loads(manifest_path(output).read_text())
    assert manifest["contiguous"] is False
    assert manifest["filters"] == {"member": "BANKB", "since": None, "until": None}
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(line["seq"], line["member_code"]) for line in lines] == [(4, "BANKB"), (5, "BANKB")]
    assert verify_export(output, public_key=public_key_b64()).ok


@pytest.mark.django_db
def test_since_and_until_select_whole_days(tmp_path):
    make_events(3)  # all yesterday (the factory's clock)
    seal_pending()
    today = timezone.now().date()
    yesterday = today - timezone.timedelta(days=1)
    assert json.loads(manifest_path(export(tmp_path, "a", since=today.isoformat())).read_text())["count"] == 0
    both = export(tmp_path, "b", since=yesterday.isoformat(), until=yesterday.isoformat())
    assert json.loads(manifest_path(both).read_text())["count"] == 3


@pytest.mark.django_db
def test_an_export_of_a_tampered_table_fails_line_verification_even_with_a_valid_signature(tmp_path, lifted):
    make_events(5)
    seal_pending()
    run_sql(f"UPDATE {AuditEvent._meta.db_table} SET action = 'forged' WHERE seq = 3")
    output = export(tmp_path)  # signed by the exchange, so only the per-line check can tell
    result = verify_export(output, public_key=public_key_b64())
    assert not result.ok
    assert result.message.startswith("line 3 (seq 3, id ")
    assert "hash mismatch" in result.message


@pytest.mark.django_db
def test_a_manifest_re_signed_by_someone_else_fails_against_the_published_key(tmp_path):
    make_events(2)
    seal_pending()
    output = export(tmp_path)
    manifest_file = manifest_path(output)
    manifest = json.loads(manifest_file.read_text())
    forger = Ed25519PrivateKey.generate()
    manifest["count"] = 1
    manifest["public_key"] = base64.b64encode(
        forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    manifest["signature"] = base64.b64encode(forger.sign(manifest_message(manifest))).decode()
    manifest_file.write_text(render_manifest(manifest))
    pinned = verify_export(output, public_key=public_key_b64())
    assert not pinned.ok and "different key" in pinned.message
    # Trusting the manifest's own key gets as far as the line count, and warns to compare keys.
    unpinned = verify_export(output)
    assert not unpinned.ok and "manifest says 1" in unpinned.message
    assert "compare it with the exchange's published key" in unpinned.warnings[0]


@pytest.mark.django_db
def test_each_export_is_audited_with_counts_only(tmp_path):
    make_events(3)
    seal_pending()
    export(tmp_path, member="BANKA")
    event = AuditEvent.objects.get(action="audit.export")
    assert event.details == {"count": 3, "format": "jsonl", "filtered": True}
    assert event.actor == "test"


@pytest.mark.django_db
def test_no_personal_data_in_an_export(tmp_path, bank_a):
    seal_pending()
    text = export(tmp_path).read_text()
    assert "Bank A" not in text  # the member's name
    for line in text.splitlines():
        assert not set(json.loads(line)["details"]) & set(PERSONAL)


@pytest.mark.django_db
def test_the_commands_export_and_verify(tmp_path, capsys):
    make_events(5)
    seal_pending()
    output = tmp_path / "out.csv"
    call_command("export_audit", "--output", str(output), "--format", "csv")
    assert "exported 5 events (seq 1 to 5)" in capsys.readouterr().out
    call_command("verify_export", str(output), "--public-key", public_key_b64())
    assert capsys.readouterr().out.strip() == "OK 5 events"
    call_command("verify_export", str(output))
    captured = capsys.readouterr()
    assert captured.out.strip() == "OK 5 events" and "warning:" in captured.err
    flip(output, 40)
    with pytest.raises(CommandError, match="FAIL file SHA-256 does not match"):
        call_command("verify_export", str(output))
    with pytest.raises(CommandError):
        call_command("export_audit", "--output", str(output), "--since", "not-a-date")
