"""Tell the one-time seal apart in the UPDATE trigger's WHEN clause on PostgreSQL (audit/triggers.py).

The guard was one PL/pgSQL trigger for UPDATE and DELETE, called for every sealed event. Now the
executor evaluates the seal condition itself and calls the function only for what it refuses;
DELETE has its own trigger. What is refused is unchanged, so the reverse leaves the new triggers.
"""

from django.db import migrations

from audit.triggers import event_statements


def reinstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor != "postgresql":
        return  # SQLite's trigger already had its WHEN clause
    for sql in event_statements(vendor, install=False) + event_statements(vendor, install=True):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_leaner_indexes")]
    operations = [migrations.RunPython(reinstall, migrations.RunPython.noop)]
