"""A throwaway model with encrypted fields, its table created for one test module at a time.

The exchange's own models are written elsewhere; this one pins the field's behaviour on its own.
It is registered under the installed `core` app only while its module runs (so
`encrypted_fields()` finds it) and has no migration: its table is made and dropped here.
"""

from __future__ import annotations

import base64
import uuid

import pytest
from django.apps import apps
from django.db import connection, models

from core.crypto import EncryptedTextField

NEW_FIELD_KEY = "k2:" + base64.b64encode(b"n" * 32).decode()


def _make_model() -> type[models.Model]:
    class Meta:
        app_label = "core"
        db_table = "core_test_secret_note"

    return type(
        "SecretNote",
        (models.Model,),
        {
            "__module__": __name__,
            "Meta": Meta,
            "id": models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False),
            "label": models.CharField(max_length=20, default=""),
            "body": EncryptedTextField(),
            "memo": EncryptedTextField(null=True, blank=True),
            "updated_at": models.DateTimeField(auto_now=True),
        },
    )


@pytest.fixture(scope="module")
def secret_note(django_db_setup, django_db_blocker):
    """The SecretNote model class, with its table, for the duration of one test module."""
    model = _make_model()
    # Outside any test transaction, so SQLite's schema editor may turn FK checks off.
    with django_db_blocker.unblock():
        with connection.schema_editor() as editor:
            editor.create_model(model)
    try:
        yield model
    finally:
        with django_db_blocker.unblock():
            with connection.schema_editor() as editor:
                editor.delete_model(model)
        del apps.all_models["core"]["secretnote"]
        apps.clear_cache()


def raw_rows(table: str) -> list[bytes]:
    """Every row of `table` as the database holds it, each column rendered as bytes."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        rows = cursor.fetchall()
    return [b"|".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in row) for row in rows]
