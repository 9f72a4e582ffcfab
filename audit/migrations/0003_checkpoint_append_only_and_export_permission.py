"""Make signed checkpoints append-only too (see audit/triggers.py), and add the export permission."""

from django.db import migrations

from audit.triggers import checkpoint_statements


def install(apps, schema_editor):
    for sql in checkpoint_statements(schema_editor.connection.vendor, install=True):
        schema_editor.execute(sql, params=None)


def uninstall(apps, schema_editor):
    for sql in checkpoint_statements(schema_editor.connection.vendor, install=False):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]
    operations = [
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["id"],
                "permissions": [("export_auditevent", "Can download audit exports and run chain verification")],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
