from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = "Members and API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from members import schema  # noqa: F401  (registers the OpenAPI auth extension)
