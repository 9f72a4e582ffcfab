from django.conf import settings
from django.core.management.base import BaseCommand

from core.secrets import generate_secrets


class Command(BaseCommand):
    help = (
        "Print fresh production secrets as NAME=value lines for an env file. "
        "A new field key id goes first in EXCHANGE_FIELD_KEYS, the current keys are kept after it."
    )
    requires_system_checks = []  # must work precisely when secrets are missing

    def handle(self, *args, **options):
        for name, value in generate_secrets(settings.EXCHANGE_FIELD_KEYS).items():
            self.stdout.write(f"{name}={value}")
        self.stderr.write(
            "# Keep EXCHANGE_SUBJECT_KEY for the life of a database: a new one makes every stored "
            "subject token unreachable. Keep EXCHANGE_OPRF_KEY too: a new one changes every blind value "
            "and every member's pinned OPRF public key. Keep the old audit signing key's public key for "
            "verifying old checkpoints."
        )
