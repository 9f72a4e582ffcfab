"""`manage.py rotate_keys`: everything moves to the current key, in resumable batches, audited."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

import core.crypto
from audit.models import AuditEvent
from core.crypto import encrypted_fields, key_id_of
from tests.core.conftest import NEW_FIELD_KEY
from tests.testenv import TEST_FIELD_KEYS

pytestmark = pytest.mark.django_db


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def line_for(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(label + ":"))


@pytest.fixture
def old_notes(secret_note, settings):
    """Five notes written under the old key (memo empty on two), then a new key put first."""
    notes = [
        secret_note.objects.create(label=f"n{i}", body=f"borrower {i}", memo=f"ref {i}" if i % 2 == 0 else None)
        for i in range(5)
    ]
    settings.EXCHANGE_FIELD_KEYS = f"{NEW_FIELD_KEY},{TEST_FIELD_KEYS}"
    return notes


def key_ids(model, column: str) -> list[str]:
    return sorted(key_id_of(blob) for blob in model.objects.exclude(**{column: None}).values_list(column, flat=True))


def test_encrypted_fields_finds_every_encrypted_column_of_the_installed_models(secret_note):
    found = {(model, field.name) for model, field in encrypted_fields()}
    assert {(secret_note, "body"), (secret_note, "memo")} <= found
    assert all(field.model is model for model, field in encrypted_fields())


def test_it_re_encrypts_every_value_under_the_current_key(secret_note, old_notes, settings):
    before = {note.pk: (note.label, note.updated_at) for note in secret_note.objects.all()}
    output = rotate("--batch-size", "2")
    assert line_for(output, "core.SecretNote.body") == (
        "core.SecretNote.body: examined 5, re-encrypted 5, already current 0"
    )
    assert line_for(output, "core.SecretNote.memo") == (
        "core.SecretNote.memo: examined 3, re-encrypted 3, already current 0"
    )
    assert output.splitlines()[-1] == "current key k2: examined 8, re-encrypted 8, already current 0"
    assert key_ids(secret_note, "body") == ["k2"] * 5
    assert key_ids(secret_note, "memo") == ["k2"] * 3
    # Only the encrypted columns were written.
    assert {note.pk: (note.label, note.updated_at) for note in secret_note.objects.all()} == before

    settings.EXCHANGE_FIELD_KEYS = NEW_FIELD_KEY  # the old key is gone
    notes = {note.label: (note.body, note.memo) for note in secret_note.objects.all()}
    assert notes == {f"n{i}": (f"borrower {i}", f"ref {i}" if i % 2 == 0 else None) for i in range(5)}


def test_a_second_run_finds_everything_current(secret_note, old_notes):
    rotate()
    output = rotate()
    assert output.splitlines()[-1] == "current key k2: examined 8, re-encrypted 0, already current 8"


def test_a_run_that_stopped_half_way_resumes_where_it_stopped(secret_note, old_notes, monkeypatch):
    real_encrypt = core.crypto.encrypt
    calls = []

    def dies_on_the_third_value(plaintext, *, aad):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real_encrypt(plaintext, aad=aad)

    monkeypatch.setattr(core.crypto, "encrypt", dies_on_the_third_value)
    with pytest.raises(RuntimeError, match="killed"):
        rotate("--batch-size", "2")
    # The first batch committed; the failed one was rolled back as a whole.
    assert key_ids(secret_note, "body") == ["k2", "k2", "test1", "test1", "test1"]
    failed_run = AuditEvent.objects.get(action="keys.rotate")
    assert failed_run.outcome == "error"
    assert failed_run.details["error"] == "RuntimeError"

    monkeypatch.setattr(core.crypto, "encrypt", real_encrypt)
    output = rotate("--batch-size", "2")
    assert line_for(output, "core.SecretNote.body") == (
        "core.SecretNote.body: examined 5, re-encrypted 3, already current 2"
    )
    assert key_ids(secret_note, "body") == ["k2"] * 5


def test_it_writes_one_audit_event_with_counts_only(secret_note, old_notes):
    rotate()
    event = AuditEvent.objects.get(action="keys.rotate")
    assert event.outcome == "ok"
    assert event.actor.startswith("cli:") and event.actor.endswith(":rotate_keys")
    assert (event.object_type, event.object_id) == ("field_keys", "k2")
    fields = len(encrypted_fields())
    assert event.details == {
        "key_id": "k2",
        "fields": fields,
        "examined": 8,
        "reencrypted": 8,
        "already_current": 0,
        "failed": 0,
    }


def test_a_value_no_key_decrypts_is_reported_and_left_alone(secret_note, old_notes):
    broken = old_notes[1]
    with transaction.atomic():
        secret_note.objects.filter(pk=broken.pk).update(body=b"\x01\x05test1" + b"\0" * 40)
    with pytest.raises(
        CommandError, match=rf"1 value\(s\) could not be decrypted .*core\.SecretNote\.body row {broken.pk}"
    ):
        rotate()
    assert secret_note.objects.values_list("body", flat=True).get(pk=broken.pk) == b"\x01\x05test1" + b"\0" * 40
    assert key_ids(secret_note, "body") == ["k2", "k2", "k2", "k2", "test1"]
    event = AuditEvent.objects.get(action="keys.rotate")
    assert (event.outcome, event.details["failed"], event.details["reencrypted"]) == ("error", 1, 7)


def test_with_nothing_encrypted_yet_it_reports_zero_and_still_audits(secret_note):
    output = rotate()
    assert output.splitlines()[-1] == "current key test1: examined 0, re-encrypted 0, already current 0"
    assert AuditEvent.objects.get(action="keys.rotate").details["examined"] == 0


def test_it_refuses_a_batch_size_below_one(secret_note):
    with pytest.raises(CommandError, match="at least 1"):
        rotate("--batch-size", "0")


def test_stored_idempotency_answers_move_to_the_new_key_and_still_replay(bank_a, settings):
    from exchange.models import IdempotencyKey
    from tests.factories import record

    body = {"records": [record("ROT-1", 1)]}
    first = bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="rot-1")
    assert first.status_code == 201
    settings.EXCHANGE_FIELD_KEYS = f"{NEW_FIELD_KEY},{TEST_FIELD_KEYS}"
    output = rotate()
    assert line_for(output, "exchange.IdempotencyKey.response_sealed") == (
        "exchange.IdempotencyKey.response_sealed: examined 1, re-encrypted 1, already current 0"
    )
    assert key_ids(IdempotencyKey, "response_sealed") == ["k2"]
    settings.EXCHANGE_FIELD_KEYS = NEW_FIELD_KEY  # the old key is gone: the retry still gets the first answer
    again = bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="rot-1")
    assert (again.status_code, again.json()) == (201, first.json())
