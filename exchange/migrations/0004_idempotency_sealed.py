"""Stored idempotency responses encrypted with the field keys (bound to table, column and row), and
request fingerprints keyed: both held member references and digests of identifiers in the clear.

Rows are converted in place, so a retry across the upgrade still replays its first response: the
new fingerprint is the keyed digest of the old one (exchange.idempotency.fingerprint computes
exactly that), and the response is encrypted as it is. Reversible: the reverse decrypts (the
keyed fingerprints cannot be undone, so reversed rows keep them and a retry gets 422)."""

import json

from django.db import migrations, models

from core.crypto import decrypt, encrypt
from core.tokens import keyed_digest

PURPOSE = "idempotency-fingerprint"  # exchange.idempotency.FINGERPRINT_PURPOSE


def _aad(table: str, pk) -> bytes:
    # core.crypto.field_aad for the response_sealed column of this row
    return f"{table}|response_sealed|{pk}".encode()


def seal(apps, schema_editor):
    IdempotencyKey = apps.get_model("exchange", "IdempotencyKey")
    table = IdempotencyKey._meta.db_table
    for row in IdempotencyKey.objects.all().iterator():
        row.fingerprint = keyed_digest(PURPOSE, str(row.member_id), row.fingerprint)
        fields = ["fingerprint"]
        if row.response_body is not None:
            text = row.response_body if isinstance(row.response_body, str) else json.dumps(row.response_body)
            row.response_sealed = encrypt(text, aad=_aad(table, row.pk))
            fields.append("response_sealed")
        row.save(update_fields=fields)


def unseal(apps, schema_editor):
    IdempotencyKey = apps.get_model("exchange", "IdempotencyKey")
    table = IdempotencyKey._meta.db_table
    for row in IdempotencyKey.objects.filter(response_sealed__isnull=False).iterator():
        row.response_body = decrypt(bytes(row.response_sealed), aad=_aad(table, row.pk))
        row.save(update_fields=["response_body"])


class Migration(migrations.Migration):
    dependencies = [("exchange", "0003_human_labels")]

    operations = [
        migrations.AddField(
            model_name="idempotencykey", name="response_sealed", field=models.BinaryField(blank=True, null=True)
        ),
        migrations.RunPython(seal, unseal),
        migrations.RemoveField(model_name="idempotencykey", name="response_body"),
    ]
