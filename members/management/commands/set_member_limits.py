import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from core.commands import get_or_fail
from members.limits import member_limits
from members.models import Member
from members.services import member_set_limits


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


class Command(BaseCommand):
    help = (
        "Give a member its own limits instead of the defaults (a quota of 0: none); --reset goes back to "
        "the defaults first. Prints the limits in force as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("--rate", help="requests, as N/second|minute|hour|day")
        parser.add_argument("--inquiries-per-day", type=_count)
        parser.add_argument("--disputes-per-day", type=_count)
        parser.add_argument("--oprf-per-day", type=_count)
        parser.add_argument("--reset", action="store_true", help="back to the defaults, then apply the options")

    def handle(self, *args, code, rate, inquiries_per_day, disputes_per_day, oprf_per_day, reset, **options):
        member = get_or_fail(Member, f"no member {code}", code=code)
        values = {
            "rate": rate,
            "inquiries_per_day": inquiries_per_day,
            "disputes_per_day": disputes_per_day,
            "oprf_per_day": oprf_per_day,
        }
        changes = values if reset else {name: value for name, value in values.items() if value is not None}
        try:  # audited even with no change: it reads the member's limits
            member = member_set_limits(member=member, actor=cli_actor("set_member_limits"), **changes)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(json.dumps(member_limits(member)))
