from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from core.commands import get_or_fail, print_json
from members.models import Member
from members.services import member_set_key_recipient


class Command(BaseCommand):
    help = (
        "Register a member's age recipient (age1...): from then on its API keys are delivered only "
        "encrypted to it. Prints JSON {member, key_recipient}."
    )

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("recipient", metavar="AGE_RECIPIENT")

    def handle(self, *args, code, recipient, **options):
        member = get_or_fail(Member, f"no member {code}", code=code)
        try:
            member = member_set_key_recipient(member=member, recipient=recipient, actor=cli_actor("set_key_recipient"))
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        print_json(self.stdout, {"member": member.code, "key_recipient": member.key_recipient})
