"""A bulk file is found again by a keyed digest, not its plain SHA-256 (which could be checked
against guessed files holding a resident ID), and a failed file says why as `error_code`.

The keyed digest is computed from the SHA-256 (core.tokens.keyed_digest), so stored rows are
converted in place and a resubmission across the upgrade is still found. The reverse cannot undo
an HMAC: it keeps the keyed digests in the renamed column (a resubmission then is not found)."""

from django.db import migrations, models

from core.tokens import keyed_digest

PURPOSE = "submission-file"  # exchange.bulk.upload.DIGEST_PURPOSE


def key_digests(apps, schema_editor):
    Submission = apps.get_model("exchange", "Submission")
    for submission in Submission.objects.only("id", "member_id", "file_digest").iterator():
        submission.file_digest = keyed_digest(PURPOSE, str(submission.member_id), submission.file_digest)
        submission.save(update_fields=["file_digest"])


class Migration(migrations.Migration):
    dependencies = [("exchange", "0004_idempotency_sealed")]

    operations = [
        migrations.RemoveConstraint(model_name="submission", name="submission_file_unique"),
        migrations.RenameField(model_name="submission", old_name="sha256", new_name="file_digest"),
        migrations.RunPython(key_digests, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="submission",
            constraint=models.UniqueConstraint(fields=("member", "file_digest"), name="submission_file_unique"),
        ),
        migrations.AddField(
            model_name="submission",
            name="error_code",
            field=models.CharField(
                blank=True,
                choices=[
                    ("malformed_request", "the file is not readable CSV or JSON Lines"),
                    ("too_many_errors", "more rejected rows than EXCHANGE_MAX_ROW_ERRORS"),
                    ("member_suspended", "the member was suspended before the file was processed"),
                    ("processing_failed", "processing failed repeatedly"),
                ],
                max_length=32,
            ),
        ),
    ]
