"""`manage.py request_evidence CODE [--sample N] [--inquiry ID]...`: open evidence requests (spot
checks) for N random inquiries of the member in the last 90 days, or for the named ones."""

from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from core.commands import get_or_fail, print_json
from exchange.evidence import SAMPLE_DAYS, EvidenceError, evidence_requests_open
from members.models import Member


class Command(BaseCommand):
    help = (
        f"Open evidence requests for N random inquiries of the member in the last {SAMPLE_DAYS} days (--sample), "
        "or for the named ones (--inquiry, repeatable). The member answers each with the signed "
        "authorisation within EXCHANGE_EVIDENCE_DAYS. Prints one JSON line per request; each is audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("code", help="member code")
        parser.add_argument("--sample", type=int, default=0, help="how many random inquiries to check")
        parser.add_argument("--inquiry", action="append", default=[], help="an inquiry id (repeatable)")

    def handle(self, *args, code: str, sample: int, inquiry: list[str], **options):
        if bool(sample) == bool(inquiry):
            raise CommandError("give either --sample N (N >= 1) or one or more --inquiry ID")
        if sample < 0:
            raise CommandError("--sample must be at least 1")
        member = get_or_fail(Member, f"no member with code {code!r}", code=code)
        try:
            opened = evidence_requests_open(
                member=member, actor=cli_actor("request_evidence"), sample=sample, inquiry_ids=inquiry
            )
        except EvidenceError as exc:
            raise CommandError(str(exc)) from None
        for request in opened:
            print_json(
                self.stdout,
                {
                    "id": str(request.pk),
                    "member": member.code,
                    "inquiry_id": str(request.inquiry_id),
                    "due_at": request.due_at.isoformat(),
                },
            )
        if sample and len(opened) < sample:
            self.stderr.write(f"only {len(opened)} inquiries of {member.code} could be sampled")
