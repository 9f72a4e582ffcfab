"""`manage.py compliance_alerts [--since ISO8601] [--json]`: evaluate the compliance alert rules
over the window (default: the last 24 hours), store and e-mail new alerts, print every alert found."""

import json
from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from audit.actions import Action
from audit.actors import cli_actor
from audit.services import audit_write
from exchange.alerts import alerts_evaluate
from members.models import Member


def _since(value: str | None) -> datetime:
    if not value:
        return timezone.now() - timedelta(hours=24)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since {value!r} is not an ISO 8601 date or time") from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.UTC)


class Command(BaseCommand):
    help = (
        "Evaluate the compliance alert rules (inquiry_volume, consent_denials, evidence_reuse, evidence_failed, "
        "dispute_volume, quota_exceeded) over the window, default the last 24 hours; new alerts are stored, "
        "audited and e-mailed to the compliance group. Prints one line per alert (--json: one JSON object)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="start of the window (ISO 8601; default 24 hours ago)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object per line")

    def handle(self, *args, since: str | None, as_json: bool, **options):
        actor = cli_actor("compliance_alerts")
        start = _since(since)
        alerts, new = alerts_evaluate(actor=actor, since=start)
        with transaction.atomic():
            audit_write(
                action=Action.ALERTS_EVALUATE,
                actor=actor,
                details={"since": start.isoformat(), "alerts": len(alerts), "new": new},
            )
        codes = dict(Member.objects.values_list("id", "code"))
        for alert in alerts:
            row = {
                "member": codes[alert.member_id],
                "kind": alert.kind,
                "count": alert.count,
                "first_at": alert.first_at.isoformat(),
                "last_at": alert.last_at.isoformat(),
                "detail": alert.detail,
            }
            if as_json:
                self.stdout.write(json.dumps(row))
            else:
                self.stdout.write(f"{row['member']} {row['kind']} {row['count']}: {row['detail']}")
        if not as_json:
            self.stdout.write(f"{len(alerts)} alerts ({new} new) since {start.isoformat()}")
