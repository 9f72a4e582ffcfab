"""Fewer, leaner indexes on the audit table (docs/audit.md, "Indexes").

Every event insert pays for every index, and sealing sets the indexed `seq`, which makes PostgreSQL
write a new entry in every index again. So: no LIKE twins of the text indexes (`db_index` adds one
to each text column on PostgreSQL), no index on `action` (no reader looks events up by action
alone), member lookups by (member, time), and the chain's unique index on `seq` partial: an
unsealed event is in neither chain index.

The model state changes as Django would; the database changes are plain index statements, so that
SQLite does not rebuild the table (a rebuild would drop its append-only triggers). On SQLite the
inline UNIQUE on `seq` stays (it cannot be dropped without a rebuild) beside the partial one.
"""

from django.db import migrations, models

POSTGRESQL = [
    'DROP INDEX IF EXISTS "audit_auditevent_action_2131bb77"',
    'DROP INDEX IF EXISTS "audit_auditevent_action_2131bb77_like"',
    'DROP INDEX IF EXISTS "audit_auditevent_member_code_1afdb414"',
    'DROP INDEX IF EXISTS "audit_auditevent_member_code_1afdb414_like"',
    'DROP INDEX IF EXISTS "audit_auditevent_occurred_at_1f007848"',
    'ALTER TABLE "audit_auditevent" DROP CONSTRAINT IF EXISTS "audit_auditevent_seq_key"',
    'DROP INDEX IF EXISTS "audit_auditevent_seq_150a62b9_like"',
    'DROP INDEX IF EXISTS "audit_auditevent_subject_token_d6180718"',
    'DROP INDEX IF EXISTS "audit_auditevent_subject_token_d6180718_like"',
]
SQLITE = [
    'DROP INDEX IF EXISTS "audit_auditevent_action_2131bb77"',
    'DROP INDEX IF EXISTS "audit_auditevent_member_code_1afdb414"',
    'DROP INDEX IF EXISTS "audit_auditevent_occurred_at_1f007848"',
    'DROP INDEX IF EXISTS "audit_auditevent_subject_token_d6180718"',
]
CREATE = [
    'CREATE INDEX "audit_occurred_at_idx" ON "audit_auditevent" ("occurred_at")',
    'CREATE INDEX "audit_member_time_idx" ON "audit_auditevent" ("member_code", "occurred_at")',
    'CREATE INDEX "audit_subject_idx" ON "audit_auditevent" ("subject_token")',
    'CREATE UNIQUE INDEX "audit_seq_unique" ON "audit_auditevent" ("seq") WHERE "seq" IS NOT NULL',
]


def forwards(apps, schema_editor):
    drops = POSTGRESQL if schema_editor.connection.vendor == "postgresql" else SQLITE
    for statement in drops + CREATE:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_unsealed_events_by_id"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, migrations.RunPython.noop)],
            state_operations=[
                migrations.AlterField(model_name="auditevent", name="action", field=models.CharField(max_length=64)),
                migrations.AlterField(
                    model_name="auditevent", name="member_code", field=models.CharField(blank=True, max_length=32)
                ),
                migrations.AlterField(model_name="auditevent", name="occurred_at", field=models.DateTimeField()),
                migrations.AlterField(
                    model_name="auditevent", name="seq", field=models.BigIntegerField(blank=True, null=True)
                ),
                migrations.AlterField(
                    model_name="auditevent", name="subject_token", field=models.CharField(blank=True, max_length=64)
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["occurred_at"], name="audit_occurred_at_idx"),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["member_code", "occurred_at"], name="audit_member_time_idx"),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["subject_token"], name="audit_subject_idx"),
                ),
                migrations.AddConstraint(
                    model_name="auditevent",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(seq__isnull=False), fields=("seq",), name="audit_seq_unique"
                    ),
                ),
            ],
        ),
    ]
