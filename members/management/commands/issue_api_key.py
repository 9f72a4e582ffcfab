from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from core.commands import get_or_fail, print_json
from members.models import Member
from members.services import api_key_issue


class Command(BaseCommand):
    help = (
        "Issue another API key for a member; prints JSON {api_key, prefix}, or {prefix, api_key_age} "
        "(the key age-encrypted) for a member with a key recipient. The key is shown once."
    )

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("--scopes", default="submit,query", help="comma-separated: submit,query")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, code, scopes, expires_days, **options):
        member = get_or_fail(Member, f"no member {code}", code=code)
        try:
            key, full = api_key_issue(
                member=member,
                scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                expires_days=expires_days,
                actor=cli_actor("issue_api_key"),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if member.key_recipient:
            print_json(self.stdout, {"prefix": key.prefix, "api_key_age": full})
        else:
            print_json(self.stdout, {"api_key": full, "prefix": key.prefix})
