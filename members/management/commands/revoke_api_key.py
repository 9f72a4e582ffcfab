from django.core.management.base import BaseCommand

from audit.actors import cli_actor
from core.commands import get_or_fail
from members.models import ApiKey
from members.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix; it stops working at once."

    def add_arguments(self, parser):
        parser.add_argument("prefix")

    def handle(self, *args, prefix, **options):
        key = get_or_fail(ApiKey, f"no API key with prefix {prefix}", prefix=prefix)
        api_key_revoke(key=key, actor=cli_actor("revoke_api_key"))
        self.stdout.write(f"revoked {key.prefix}")
