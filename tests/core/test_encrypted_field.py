"""EncryptedTextField on a real table: what is stored, lazy decryption, and what it refuses."""

from __future__ import annotations

import pickle
import uuid

import pytest
from django.core import serializers
from django.core.exceptions import FieldError
from django.db import models, transaction
from django.test.utils import isolate_apps

from core.crypto import Ciphertext, DecryptionError, EncryptedTextField, field_aad, key_id_of
from tests.core.conftest import NEW_FIELD_KEY, raw_rows
from tests.testenv import TEST_FIELD_KEYS

pytestmark = pytest.mark.django_db

NAME = "Zhang San 张三"
REFERENCE = "LOAN-2026-000123"


def stored(model, pk, column: str) -> bytes:
    """The raw value of one column, as the database holds it."""
    return model.objects.values_list(column, flat=True).get(pk=pk)


def test_it_round_trips_through_create_and_get(secret_note):
    note = secret_note.objects.create(body=NAME, memo=REFERENCE)
    loaded = secret_note.objects.get(pk=note.pk)
    assert (loaded.body, loaded.memo) == (NAME, REFERENCE)
    assert note.body == NAME  # the saved instance keeps its plaintext


def test_the_table_holds_no_plaintext(secret_note):
    secret_note.objects.create(label="visible", body=NAME, memo=REFERENCE)
    rows = raw_rows(secret_note._meta.db_table)
    assert len(rows) == 1 and b"visible" in rows[0]
    for secret in (NAME, "Zhang", REFERENCE, "000123"):
        assert secret.encode() not in rows[0]


def test_null_stays_null_and_empty_text_is_encrypted(secret_note):
    note = secret_note.objects.create(body="")
    assert stored(secret_note, note.pk, "memo") is None
    assert key_id_of(stored(secret_note, note.pk, "body")) == "test1"
    loaded = secret_note.objects.get(pk=note.pk)
    assert (loaded.body, loaded.memo) == ("", None)
    assert secret_note.objects.filter(memo__isnull=True).count() == 1
    assert secret_note.objects.filter(memo=None).count() == 1


def test_the_ciphertext_is_bound_to_table_column_and_row(secret_note):
    note = secret_note.objects.create(body=NAME)
    aad = field_aad(secret_note, secret_note._meta.get_field("body"), note.pk)
    assert aad == f"core_test_secret_note|body|{note.pk}".encode()


def test_saving_a_change_stores_the_new_value(secret_note):
    note = secret_note.objects.create(body="first")
    note.body = "second"
    note.save(update_fields=["body"])
    assert secret_note.objects.get(pk=note.pk).body == "second"


def test_saving_without_reading_keeps_the_stored_ciphertext(secret_note):
    note = secret_note.objects.create(body=NAME)
    before = stored(secret_note, note.pk, "body")
    loaded = secret_note.objects.get(pk=note.pk)
    loaded.label = "changed"
    loaded.save()
    assert stored(secret_note, note.pk, "body") == before
    assert secret_note.objects.get(pk=note.pk).body == NAME


def test_bulk_create_encrypts_every_row(secret_note):
    secret_note.objects.bulk_create([secret_note(body=f"borrower {i}", memo=f"ref {i}") for i in range(5)])
    for row in raw_rows(secret_note._meta.db_table):
        assert b"borrower" not in row and b"ref " not in row
    assert sorted(note.body for note in secret_note.objects.all()) == [f"borrower {i}" for i in range(5)]


def test_only_and_defer_load_and_decrypt_the_field_when_it_is_read(secret_note, django_assert_num_queries):
    note = secret_note.objects.create(body=NAME, memo=REFERENCE)
    partial = secret_note.objects.only("id").get(pk=note.pk)
    deferred = secret_note.objects.defer("body").get(pk=note.pk)
    with django_assert_num_queries(2):
        assert partial.body == NAME
        assert deferred.body == NAME
    assert deferred.memo == REFERENCE


def test_refresh_from_db_reads_the_current_value(secret_note):
    note = secret_note.objects.create(body="first")
    other = secret_note.objects.get(pk=note.pk)
    other.body = "second"
    other.save()
    note.refresh_from_db()
    assert note.body == "second"
    note.refresh_from_db(fields=["body"])
    assert note.body == "second"


def test_values_and_values_list_return_ciphertext_not_plaintext(secret_note):
    secret_note.objects.create(body=NAME)
    value = secret_note.objects.values("body").get()["body"]
    listed = secret_note.objects.values_list("body", flat=True).get()
    for blob in (value, listed):
        assert isinstance(blob, bytes) and isinstance(blob, Ciphertext)
        assert NAME.encode() not in blob
        assert key_id_of(blob) == "test1"


def test_reading_a_row_decrypts_nothing_until_the_field_is_read(secret_note):
    note = secret_note.objects.create(label="ok", body=NAME)
    secret_note.objects.filter(pk=note.pk).update(body=b"\x01\x05test1" + b"\0" * 40)
    loaded = secret_note.objects.get(pk=note.pk)
    assert loaded.label == "ok"
    with pytest.raises(DecryptionError, match=r"cannot decrypt core\.SecretNote\.body of row") as info:
        loaded.body  # noqa: B018
    assert NAME not in str(info.value)


@pytest.mark.parametrize(
    "lookup",
    [
        {"body": NAME},
        {"body__exact": NAME},
        {"body__iexact": NAME},
        {"body__in": [NAME]},
        {"body__icontains": "Zhang"},
        {"body__startswith": "Z"},
        {"body__gt": "A"},
        {"body__regex": "."},
        {"body__lower": "x"},
    ],
)
def test_it_refuses_to_be_filtered_on(secret_note, lookup):
    with pytest.raises(FieldError, match=r"encrypted fields cannot be filtered.*use a blind index"):
        list(secret_note.objects.filter(**lookup))
    with pytest.raises(FieldError, match="encrypted fields cannot be filtered"):
        list(secret_note.objects.exclude(**lookup))


def test_update_and_bulk_update_refuse_plaintext(secret_note):
    note = secret_note.objects.create(body=NAME)
    # Both mark the surrounding transaction for rollback on error: give each a savepoint.
    with pytest.raises(TypeError, match="cannot write plaintext"), transaction.atomic():
        secret_note.objects.filter(pk=note.pk).update(body="plain")
    note.body = "plain"
    with pytest.raises(TypeError, match="cannot write plaintext"), transaction.atomic():
        secret_note.objects.bulk_update([note], ["body"])
    assert secret_note.objects.get(pk=note.pk).body == NAME


def test_a_ciphertext_copied_into_another_row_does_not_decrypt(secret_note):
    victim = secret_note.objects.create(body=NAME)
    attacker = secret_note.objects.create(body="mine")
    secret_note.objects.filter(pk=attacker.pk).update(body=stored(secret_note, victim.pk, "body"))
    with pytest.raises(DecryptionError, match="another row or column"):
        secret_note.objects.get(pk=attacker.pk).body  # noqa: B018


def test_a_ciphertext_copied_into_another_column_does_not_decrypt(secret_note):
    note = secret_note.objects.create(body=NAME, memo="memo")
    secret_note.objects.filter(pk=note.pk).update(memo=stored(secret_note, note.pk, "body"))
    with pytest.raises(DecryptionError, match="another row or column"):
        secret_note.objects.get(pk=note.pk).memo  # noqa: B018


def test_copying_an_instance_to_a_new_primary_key_encrypts_for_the_new_row(secret_note):
    original = secret_note.objects.create(body=NAME)
    copy = secret_note.objects.get(pk=original.pk)
    copy.pk = uuid.uuid4()
    copy._state.adding = True
    copy.save()
    assert secret_note.objects.get(pk=copy.pk).body == NAME
    assert stored(secret_note, copy.pk, "body") != stored(secret_note, original.pk, "body")


def test_a_loaded_instance_survives_pickling(secret_note):
    note = secret_note.objects.create(body=NAME)
    restored = pickle.loads(pickle.dumps(secret_note.objects.get(pk=note.pk)))  # noqa: S301
    assert restored.body == NAME


def test_it_takes_only_text_or_none(secret_note):
    with pytest.raises(TypeError, match="takes a str or None, not bytes"):
        secret_note(body=b"raw bytes")
    note = secret_note(body=NAME)
    with pytest.raises(TypeError, match="not int"):
        note.body = 42


def test_it_refuses_to_be_serialised(secret_note):
    note = secret_note.objects.create(body=NAME)
    with pytest.raises(TypeError, match="is not serialised"):
        serializers.serialize("json", [note])


def test_it_refuses_to_save_a_row_without_a_primary_key(secret_note):
    note = secret_note(body=NAME)
    note.pk = None
    field = secret_note._meta.get_field("body")
    with pytest.raises(ValueError, match="primary key must be set before saving"):
        field.pre_save(note, add=True)


def test_a_two_key_ring_reads_rows_of_both_keys(secret_note, settings):
    old = secret_note.objects.create(body="old row")
    settings.EXCHANGE_FIELD_KEYS = f"{NEW_FIELD_KEY},{TEST_FIELD_KEYS}"
    new = secret_note.objects.create(body="new row")
    assert key_id_of(stored(secret_note, old.pk, "body")) == "test1"
    assert key_id_of(stored(secret_note, new.pk, "body")) == "k2"
    assert secret_note.objects.get(pk=old.pk).body == "old row"
    assert secret_note.objects.get(pk=new.pk).body == "new row"


def test_it_deconstructs_for_migrations():
    _name, path, args, kwargs = EncryptedTextField(null=True, blank=True).deconstruct()
    assert path == "core.crypto.EncryptedTextField"
    assert (args, kwargs) == ([], {"null": True, "blank": True})
    assert EncryptedTextField(editable=True).deconstruct()[3] == {"editable": True}


@isolate_apps("core")
def test_the_system_check_refuses_an_auto_increment_pk_and_an_index():
    class Bad(models.Model):  # noqa: DJ008
        secret = EncryptedTextField(db_index=True)

        class Meta:
            app_label = "core"

    class Good(models.Model):  # noqa: DJ008
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)
        secret = EncryptedTextField()

        class Meta:
            app_label = "core"

    assert sorted(error.id for error in Bad.check()) == ["core.E101", "core.E102"]
    assert Good.check() == []
