from django.apps import AppConfig
from django.db.models.signals import post_migrate

ROLES_MIGRATION = "0002_staff_roles"


def _sync_roles_after_migrate(sender, *, using, apps=None, **kwargs) -> None:
    """Keep the staff role groups in step with members/roles.py after every migrate (and after a
    test flush, which empties auth tables), once the migration that introduced them is applied."""
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    from members.roles import roles_sync

    recorder = MigrationRecorder(connections[using])
    if recorder.has_table() and recorder.migration_qs.filter(app="members", name=ROLES_MIGRATION).exists():
        # `flush` (test teardown) sends post_migrate without the migration state's `apps`.
        if apps is None:
            from django.apps import apps
        roles_sync(apps, using=using)


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = "Members and API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from members import (
            schema,  # noqa: F401  (registers the OpenAPI auth extension)
            staff_login,  # noqa: F401  (audits failed and locked-out staff log-ins)
        )

        post_migrate.connect(_sync_roles_after_migrate, sender=self, dispatch_uid="members.roles_sync")
