from django.core.management.base import BaseCommand

from audit.actors import cli_actor
from core.commands import get_or_fail
from members.models import Member, MemberStatus
from members.services import member_set_status


class Command(BaseCommand):
    help = "Suspend or reactivate a member; a suspended member's calls get 403 member_suspended."

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("status", choices=MemberStatus.values)

    def handle(self, *args, code, status, **options):
        member = get_or_fail(Member, f"no member {code}", code=code)
        member = member_set_status(member=member, status=status, actor=cli_actor("set_member_status"))
        self.stdout.write(f"{member.code} {member.status}")
