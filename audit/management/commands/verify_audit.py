"""`manage.py verify_audit`: recompute the whole audit chain and check every signed checkpoint."""

import logging

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction
from tqdm import tqdm

from audit.actions import Action
from audit.actors import cli_actor
from audit.models import AuditEvent, Outcome
from audit.services import audit_write
from audit.signing import public_key_b64, require_public_key
from audit.verify import verify_chain

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Check the audit chain (every hash and link, in seq order) and every checkpoint signature. "
        "Exit 0 printing `OK <n> events`, or non-zero naming the first bad event."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            metavar="B64",
            help="a trusted public key (repeat for retired keys); default: the configured signing key's",
        )
        parser.add_argument("--progress", action="store_true", help="show a progress bar")

    def handle(self, *args, **options):
        try:
            keys = [require_public_key(key) for key in options["public_key"]] or [public_key_b64()]
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        total = AuditEvent.objects.filter(seq__isnull=False).count() if options["progress"] else None
        with tqdm(total=total, disable=None if options["progress"] else True, unit="event") as bar:
            report = verify_chain(public_keys=keys, progress=bar.update)
        self._record(report)
        if not report.ok:
            raise CommandError(report.summary())
        self.stdout.write(report.summary())

    def _record(self, report) -> None:
        # Verifying reads the whole log, so it is audited too; an auditor's read-only connection
        # cannot write, and that must not hide the verdict.
        try:
            with transaction.atomic():
                audit_write(
                    action=Action.AUDIT_VERIFY,
                    actor=cli_actor("verify_audit"),
                    outcome=Outcome.OK if report.ok else Outcome.ERROR,
                    details={"events": report.events, "checkpoints": report.checkpoints},
                )
        except DatabaseError:
            logger.warning("verify_audit could not record its audit event")
