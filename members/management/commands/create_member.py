from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from audit.actors import cli_actor
from core.commands import print_json
from members.models import Member, MemberKind
from members.services import member_create


class Command(BaseCommand):
    help = (
        "Create a member with an API key of both scopes; prints JSON {member, api_key}, or with "
        "--key-recipient the key encrypted to it: {member, prefix, api_key_age}."
    )

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=MemberKind.values, default=MemberKind.OTHER)
        parser.add_argument(
            "--key-recipient",
            metavar="AGE_RECIPIENT",
            default="",
            help="the member's age public key (age1...): its keys are then delivered only encrypted to it",
        )

    def handle(self, *args, code, name, kind, key_recipient, **options):
        if Member.objects.filter(code=code).exists():
            raise CommandError(f"member {code} already exists")
        try:
            member, key, secret = member_create(
                code=code, name=name, kind=kind, key_recipient=key_recipient, actor=cli_actor("create_member")
            )
        except (ValidationError, IntegrityError) as exc:
            raise CommandError(f"cannot create member: {'; '.join(getattr(exc, 'messages', [str(exc)]))}") from None
        if member.key_recipient:
            print_json(self.stdout, {"member": member.code, "prefix": key.prefix, "api_key_age": secret})
        else:
            print_json(self.stdout, {"member": member.code, "api_key": secret})
