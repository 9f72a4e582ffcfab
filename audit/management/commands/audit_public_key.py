"""`manage.py audit_public_key`: the key auditors use to verify checkpoints and exports."""

from django.core.management.base import BaseCommand

from audit.signing import public_key_b64


class Command(BaseCommand):
    help = "Print the base64 raw Ed25519 public key that verifies audit checkpoints and exports."

    def handle(self, *args, **options):
        self.stdout.write(public_key_b64())
