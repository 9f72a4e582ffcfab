"""The staff roles of the admin console as groups: operator, compliance officer, auditor
(see members/roles.py), with the custom permissions they use."""

from django.db import migrations

from members.roles import roles_remove, roles_sync


def create_roles(apps, schema_editor):
    roles_sync(apps, using=schema_editor.connection.alias)


def remove_roles(apps, schema_editor):
    roles_remove(apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0001_initial"),
        ("exchange", "0002_submissions"),
        ("audit", "0003_checkpoint_append_only_and_export_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
